//! Significance criteria: one [`Criterion`] trait, one module per criterion.
//!
//! A criterion scores every neuron of every prunable layer; **higher = more
//! significant**, so schedules remove the lowest scores first. Scores are returned per
//! layer, in the order of [`crate::status::ActivationStatus::layers`] (= model order of
//! the prunable layers, see [`crate::surgery::prunable_layers`]).
//!
//! The status-based criteria (`apoz`, `entropy`, `mi`, `pattern`) need only an
//! [`ActivationStatus`], so they are tested on synthetic statuses; `l1` needs the
//! model, `taylor` the model and data, `random` just the widths.

pub mod apoz;
pub mod entropy;
pub mod l1;
pub mod mi;
pub mod pattern;
pub mod random;
pub mod taylor;

use crate::PruneError;
use crate::record::Data;
use crate::status::ActivationStatus;

/// What a criterion may look at. Fields a criterion does not need may be `None`.
#[derive(Clone, Copy, Default)]
pub struct Context<'a> {
    /// The recorded activation status (validation split).
    pub status: Option<&'a ActivationStatus>,
    /// The trained model.
    pub model: Option<&'a net::Model>,
    /// Validation data (for gradient-based criteria).
    pub data: Option<Data<'a>>,
}

impl<'a> Context<'a> {
    /// A context holding only a status (what the status-based criteria need).
    pub fn from_status(status: &'a ActivationStatus) -> Context<'a> {
        Context { status: Some(status), ..Context::default() }
    }

    pub(crate) fn need_status(&self, criterion: &'static str) -> Result<&'a ActivationStatus, PruneError> {
        self.status.ok_or(PruneError::MissingInput { criterion, what: "an activation status" })
    }

    pub(crate) fn need_model(&self, criterion: &'static str) -> Result<&'a net::Model, PruneError> {
        self.model.ok_or(PruneError::MissingInput { criterion, what: "a model" })
    }
}

/// Per-layer neuron scores: `scores[layer][neuron]`, higher = more significant.
pub type Scores = Vec<Vec<f64>>;

/// A significance criterion.
pub trait Criterion: Send + Sync {
    /// The short name used on the command line (`apoz`, `mi`, ...).
    fn name(&self) -> &'static str;
    /// Scores every neuron of every prunable layer; higher = more significant.
    fn scores(&self, cx: &Context<'_>) -> Result<Scores, PruneError>;
}

/// The accepted criterion names, for error messages and `--help`.
pub const NAMES: &str = "apoz, entropy, mi, mi-pred, pattern, l1, random, taylor";

/// The criterion called `name` (see [`NAMES`]); `seed` feeds `random`.
/// `mi` uses the true label, `mi-pred` the model's prediction.
pub fn by_name(name: &str, seed: u64) -> Result<Box<dyn Criterion>, PruneError> {
    Ok(match name {
        "apoz" => Box::new(apoz::Apoz),
        "entropy" => Box::new(entropy::Entropy),
        "mi" => Box::new(mi::MutualInformation { target: mi::Target::Label }),
        "mi-pred" => Box::new(mi::MutualInformation { target: mi::Target::Prediction }),
        "pattern" => Box::new(pattern::Patterns::default()),
        "l1" => Box::new(l1::L1),
        "random" => Box::new(random::Random { seed }),
        "taylor" => Box::new(taylor::Taylor),
        _ => {
            return Err(PruneError::UnknownName { kind: "criterion", name: name.into(), accepted: NAMES });
        }
    })
}

/// Binary entropy in bits of a probability `p` (0 at p = 0 or 1).
pub(crate) fn binary_entropy(p: f64) -> f64 {
    if p <= 0.0 || p >= 1.0 { 0.0 } else { -(p * p.log2() + (1.0 - p) * (1.0 - p).log2()) }
}

/// Entropy in bits of a distribution given by counts.
pub(crate) fn entropy_of_counts(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let t = total as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / t).map(|p| -p * p.log2()).sum()
}

/// The planted layer every status-based criterion is tested on.
#[cfg(test)]
pub(crate) mod planted {
    use crate::status::{ActivationStatus, LayerStatus};

    /// Neuron roles in the planted layer.
    pub const DEAD: usize = 0;
    pub const ALWAYS_ON: usize = 1;
    /// On iff label ∈ {0, 1}.
    pub const LOW_CLASSES: usize = 2;
    /// Pseudo-random, on about half the time, independent of the label.
    pub const NOISE: usize = 3;
    /// On iff label == 2.
    pub const CLASS_2: usize = 4;
    /// On for about 1 input in 16, independent of the label.
    pub const RARE: usize = 5;
    /// On iff label == 0.
    pub const CLASS_0: usize = 6;
    pub const NEURONS: usize = 7;

    fn hash(i: usize) -> u64 {
        (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29).wrapping_mul(0xBF58_476D_1CE4_E5B9)
    }

    /// 800 inputs, 4 classes (label = i mod 4); the model predicts the label except on
    /// every 50th input, where it predicts (label + 1) mod 4.
    pub fn status() -> ActivationStatus {
        let n = 800;
        let labels: Vec<u32> = (0..n).map(|i| (i % 4) as u32).collect();
        let predictions: Vec<u32> =
            labels.iter().enumerate().map(|(i, &l)| if i % 50 == 7 { (l + 1) % 4 } else { l }).collect();
        let mut d = vec![false; n * NEURONS];
        for i in 0..n {
            let l = labels[i];
            let row = &mut d[i * NEURONS..(i + 1) * NEURONS];
            row[ALWAYS_ON] = true;
            row[LOW_CLASSES] = l < 2;
            row[NOISE] = hash(i) >> 63 == 1;
            row[CLASS_2] = l == 2;
            row[RARE] = hash(i + 7919) >> 60 == 0;
            row[CLASS_0] = l == 0;
        }
        let layer = LayerStatus::from_decisions(1, NEURONS, &d).unwrap();
        let st = ActivationStatus { layers: vec![layer], labels, predictions, num_classes: 4 };
        st.validate().unwrap();
        st
    }

    /// Neuron indices sorted from most to least significant (stable for ties).
    pub fn ranking(scores: &[f64]) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..scores.len()).collect();
        idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        idx
    }
}
