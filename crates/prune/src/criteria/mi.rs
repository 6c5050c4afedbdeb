//! Mutual information between a neuron's on/off decision and the output class — the
//! true label or the model's prediction: how much the decision, as a precondition,
//! tells about the output. I(D; Y) = H(Y) − P(on)·H(Y | on) − P(off)·H(Y | off), in bits.

use super::{Context, Criterion, Scores, entropy_of_counts};
use crate::PruneError;
use crate::status::LayerStatus;

/// Which class the decision is compared with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// The true label.
    #[default]
    Label,
    /// The model's prediction.
    Prediction,
}

/// Scores each neuron by I(decision; class) in bits.
#[derive(Clone, Copy, Debug, Default)]
pub struct MutualInformation {
    /// The class the decision is compared with.
    pub target: Target,
}

/// Per neuron, on-counts per class: `neurons × classes`, row-major.
pub(crate) fn on_counts_per_class(layer: &LayerStatus, classes: &[u32], num_classes: usize) -> Vec<u64> {
    let mut counts = vec![0u64; layer.neurons * num_classes];
    for (i, &c) in classes.iter().enumerate() {
        for (w, &word) in layer.pattern(i).iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let j = w * 64 + bits.trailing_zeros() as usize;
                counts[j * num_classes + c as usize] += 1;
                bits &= bits - 1;
            }
        }
    }
    counts
}

/// I(D; Y) in bits for every neuron of `layer` against `classes` (one per input).
pub fn mutual_information(layer: &LayerStatus, classes: &[u32], num_classes: usize) -> Vec<f64> {
    let mut class_counts = vec![0u64; num_classes];
    for &c in classes {
        class_counts[c as usize] += 1;
    }
    let n = classes.len() as f64;
    let h_y = entropy_of_counts(&class_counts);
    let on = on_counts_per_class(layer, classes, num_classes);
    (0..layer.neurons)
        .map(|j| {
            let on_j = &on[j * num_classes..(j + 1) * num_classes];
            let off_j: Vec<u64> = class_counts.iter().zip(on_j).map(|(t, o)| t - o).collect();
            let n_on: u64 = on_j.iter().sum();
            let p_on = n_on as f64 / n;
            let mi = h_y - p_on * entropy_of_counts(on_j) - (1.0 - p_on) * entropy_of_counts(&off_j);
            // Rounding can leave −1e-16 for an independent neuron; MI is never negative.
            mi.max(0.0)
        })
        .collect()
}

impl Criterion for MutualInformation {
    fn name(&self) -> &'static str {
        match self.target {
            Target::Label => "mi",
            Target::Prediction => "mi-pred",
        }
    }

    fn scores(&self, cx: &Context<'_>) -> Result<Scores, PruneError> {
        let st = cx.need_status(self.name())?;
        st.validate()?;
        let classes = match self.target {
            Target::Label => &st.labels,
            Target::Prediction => &st.predictions,
        };
        Ok(st.layers.iter().map(|l| mutual_information(l, classes, st.num_classes)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criteria::planted::{self, *};

    #[test]
    fn label_predictive_neurons_rank_first() {
        let st = planted::status();
        let s = &MutualInformation { target: Target::Label }.scores(&Context::from_status(&st)).unwrap()[0];
        let r = planted::ranking(s);
        // LOW_CLASSES halves the 4 classes: exactly 1 bit; CLASS_2 and CLASS_0 identify one
        // class of four: H(Y) − 3/4·log2(3) ≈ 0.811 bits.
        assert_eq!(r[0], LOW_CLASSES);
        assert!((s[LOW_CLASSES] - 1.0).abs() < 1e-12);
        assert!((s[CLASS_2] - (2.0 - 0.75 * 3f64.log2())).abs() < 1e-12);
        assert!(r[1..3].contains(&CLASS_2) && r[1..3].contains(&CLASS_0));
        assert_eq!(s[DEAD], 0.0);
        assert_eq!(s[ALWAYS_ON], 0.0);
        assert!(s[NOISE] < 0.02, "noise carries almost no information: {}", s[NOISE]);
        assert!(s[RARE] < 0.02);
    }

    #[test]
    fn prediction_target_sees_the_models_mistakes() {
        let st = planted::status();
        let cx = Context::from_status(&st);
        let label = &MutualInformation { target: Target::Label }.scores(&cx).unwrap()[0];
        let pred = &MutualInformation { target: Target::Prediction }.scores(&cx).unwrap()[0];
        // The planted neurons follow the label exactly, and the predictions only mostly.
        assert!(pred[LOW_CLASSES] < label[LOW_CLASSES]);
        assert!(pred[LOW_CLASSES] > 0.8);
    }
}
