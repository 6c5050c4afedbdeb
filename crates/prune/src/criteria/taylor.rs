//! The Taylor baseline (Molchanov et al., "Pruning Convolutional Neural Networks for
//! Resource Efficient Inference", 2017): the first-order estimate of the change in
//! loss when a neuron is removed. Per input, the mean over the neuron's positions of
//! activation × gradient of the loss with respect to it, in absolute value, averaged
//! over the inputs. Gradients come from `net::Model::inspect_gradients` on the
//! validation data, rescaled by the batch size so that they are per-input gradients.

use super::{Context, Criterion, Scores};
use crate::PruneError;
use crate::surgery::prunable_layers;

/// Scores each neuron by `mean over inputs of |mean over positions of a · ∂L/∂a|`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Taylor;

impl Criterion for Taylor {
    fn name(&self) -> &'static str {
        "taylor"
    }

    fn scores(&self, cx: &Context<'_>) -> Result<Scores, PruneError> {
        let model = cx.need_model(self.name())?;
        let data =
            cx.data.ok_or(PruneError::MissingInput { criterion: "taylor", what: "validation data" })?;
        let prunable = prunable_layers(model)?;
        let chunks = data.map_chunks(|images, labels, n, ws| {
            let mut sums: Vec<Vec<f64>> = prunable.iter().map(|p| vec![0.0; p.neurons]).collect();
            model.inspect_gradients(images, labels, n, ws, &mut |i, a, g, _| {
                if let Some(slot) = prunable.iter().position(|p| p.relu == i) {
                    let pos = prunable[slot].positions;
                    let per = prunable[slot].neurons * pos;
                    for (sa, sg) in a.chunks_exact(per).zip(g.chunks_exact(per)) {
                        for (j, (ca, cg)) in sa.chunks_exact(pos).zip(sg.chunks_exact(pos)).enumerate() {
                            let dot: f64 = ca.iter().zip(cg).map(|(&x, &y)| x as f64 * y as f64).sum();
                            // The loss is a mean over the batch: × n gives per-input gradients.
                            sums[slot][j] += (dot * n as f64 / pos as f64).abs();
                        }
                    }
                }
            })?;
            Ok(sums)
        })?;
        let mut total: Vec<Vec<f64>> = prunable.iter().map(|p| vec![0.0; p.neurons]).collect();
        for part in chunks {
            for (t, p) in total.iter_mut().zip(part) {
                for (a, b) in t.iter_mut().zip(p) {
                    *a += b;
                }
            }
        }
        let n = data.indices.len().max(1) as f64;
        Ok(total.into_iter().map(|l| l.into_iter().map(|s| s / n).collect()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Data, testdata};
    use net::{Init, Layer, Model};

    #[test]
    fn dead_neurons_score_zero_and_scores_do_not_depend_on_chunking() {
        let dir = tempfile::tempdir().unwrap();
        let ds = testdata::stripes(dir.path(), "t", 40, 2);
        let mut m = Model::from_spec("flatten,fc6,relu,fc3", [1, 4, 4], 3, Init::KaimingNormal, 4).unwrap();
        if let Layer::Linear(l) = &mut m.layers_mut()[1] {
            l.weight[16..32].fill(0.0);
            l.bias[1] = -10.0;
        }
        let idx: Vec<u32> = (0..40).collect();
        let a = Taylor
            .scores(&Context {
                model: Some(&m),
                data: Some(Data { batch: 40, ..Data::new(&ds, &idx) }),
                ..Default::default()
            })
            .unwrap();
        let b = Taylor
            .scores(&Context {
                model: Some(&m),
                data: Some(Data { batch: 8, ..Data::new(&ds, &idx) }),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(a[0][1], 0.0);
        assert!(a[0].iter().filter(|&&s| s > 0.0).count() >= 3, "{a:?}");
        for (x, y) in a[0].iter().zip(&b[0]) {
            assert!((x - y).abs() <= 1e-5 * x.abs().max(1e-9), "{x} vs {y}");
        }
        assert!(Taylor.scores(&Context { model: Some(&m), ..Default::default() }).is_err());
    }
}
