//! The L1-norm baseline (Li et al., "Pruning Filters for Efficient ConvNets", 2017):
//! a neuron's score is the sum of absolute weights of its producer row (dense) or
//! filter (conv), bias excluded. It looks only at the weights, never at data.

use net::Layer;

use super::{Context, Criterion, Scores};
use crate::PruneError;
use crate::surgery::prunable_layers;

/// Scores each neuron by the L1 norm of its incoming weights.
#[derive(Clone, Copy, Debug, Default)]
pub struct L1;

impl Criterion for L1 {
    fn name(&self) -> &'static str {
        "l1"
    }

    fn scores(&self, cx: &Context<'_>) -> Result<Scores, PruneError> {
        let model = cx.need_model(self.name())?;
        prunable_layers(model)?
            .iter()
            .map(|p| {
                let (weight, row) = match &model.layers()[p.producer] {
                    Layer::Linear(l) => (&l.weight, l.in_features),
                    Layer::Conv2d(c) => (&c.weight, c.in_channels * c.kernel * c.kernel),
                    _ => unreachable!("producers are Linear or Conv2d"),
                };
                Ok(weight.chunks_exact(row).map(|r| r.iter().map(|&w| w.abs() as f64).sum()).collect())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::{Init, Model};

    #[test]
    fn ranks_rows_and_filters_by_weight_magnitude() {
        let mut m =
            Model::from_spec("conv3k3,relu,flatten,fc4,relu,fc2", [1, 4, 4], 2, Init::KaimingNormal, 9)
                .unwrap();
        if let Layer::Conv2d(c) = &mut m.layers_mut()[0] {
            c.weight[9..18].fill(0.0);
            c.weight[18..27].fill(5.0);
        }
        if let Layer::Linear(l) = &mut m.layers_mut()[3] {
            l.weight[..12].fill(-1.0);
        }
        let s = L1.scores(&Context { model: Some(&m), ..Context::default() }).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0][1], 0.0);
        assert_eq!(s[0][2], 45.0);
        assert!(s[0][0] > 0.0 && s[0][0] < 45.0);
        assert_eq!(s[1][0], 12.0);
        assert!(L1.scores(&Context::default()).is_err());
    }
}
