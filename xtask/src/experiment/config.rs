//! The configuration of one run of a sweep and its stable id.
//!
//! A run is fully described by a [`RunConfig`]; its id is a hash of the config's
//! canonical JSON, so the same run gets the same id in every process, on every machine
//! and in every shard. That is what makes resuming and merging possible.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Everything that determines the outcome of one run. Field order is part of the id
/// (the JSON is hashed as serialised), so fields are only ever appended, with a new
/// recipe version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The recipe this run belongs to (`thesis`, `criteria`, …).
    pub experiment: String,
    /// The recipe's version; bumped whenever a recipe changes what a run does.
    pub version: u32,
    /// The model spec as `net::parse_spec` reads it, e.g. `mlp:784-600-600-10`.
    pub model: String,
    /// Hidden widths of the model before pruning (neurons or channels per hidden layer).
    pub hidden: Vec<usize>,
    /// Epochs of training before pruning; fractional budgets train `max_batches` of an epoch.
    pub pretrain_epochs: f64,
    /// Significance criterion (`apoz`, `entropy`, `mi`, `pattern`, `l1`, `random`, `taylor`),
    /// or `none` for a run that is not pruned.
    pub criterion: String,
    /// How much to prune: `ratio:R` (fraction R of each hidden layer removed),
    /// `dead` (neurons that never fire), `search:D` (activation-guided width search with
    /// an accuracy drop of at most D), or `none`.
    pub schedule: String,
    /// What follows pruning: `finetune`, `reinit`, `rewind` or `none`.
    pub strategy: String,
    /// Epochs of training after pruning (0 for unpruned runs).
    pub retrain_epochs: usize,
    /// Training images used (0: the whole training split).
    pub train_images: usize,
    /// Images of the training set held out as the validation split pruning decides on.
    pub validation: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// SGD learning rate.
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// The seed of initialisation, data order and splits.
    pub seed: u64,
    /// Learning-rate schedule of every training phase, as `cargo xtask train --schedule`
    /// reads it (`constant`, `cosine`, `step:EVERY:GAMMA`). Appended in recipe versions 2;
    /// left out of the JSON when `constant`, so the ids of earlier runs do not change.
    #[serde(default = "constant", skip_serializing_if = "is_constant")]
    pub lr_schedule: String,
    /// Learning rate of retraining after pruning (`None`: `lr`). Appended in recipe
    /// versions 2; left out of the JSON when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain_lr: Option<f32>,
    /// SGD momentum of retraining after pruning (`None`: `momentum`); as `retrain_lr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain_momentum: Option<f32>,
    /// L2 weight decay of every training phase. Appended in `width-search` version 4;
    /// left out of the JSON when 0, so the ids of earlier runs do not change.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight_decay: f32,
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

fn constant() -> String {
    "constant".into()
}

fn is_constant(s: &str) -> bool {
    s == "constant"
}

impl RunConfig {
    /// The canonical JSON of this config (the bytes that are hashed).
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a RunConfig always serialises")
    }

    /// The stable id: the first 16 hex digits of the SHA-256 of the canonical JSON.
    pub fn id(&self) -> String {
        short_hash(self.canonical_json().as_bytes())
    }

    /// The config without its seed, as JSON: runs that differ only in their seed are
    /// repetitions of one setting and are averaged together in reports.
    pub fn setting_key(&self) -> String {
        let mut c = self.clone();
        c.seed = 0;
        c.canonical_json()
    }
}

/// The first 16 hex digits of the SHA-256 of `bytes`.
pub fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) fn sample(seed: u64, width: usize) -> RunConfig {
    RunConfig {
        experiment: "thesis".into(),
        version: 1,
        model: format!("mlp:784-{width}-{width}-10"),
        hidden: vec![width, width],
        pretrain_epochs: 1.0,
        criterion: "entropy".into(),
        schedule: "dead".into(),
        strategy: "reinit".into(),
        retrain_epochs: 1,
        train_images: 0,
        validation: 5000,
        batch: 64,
        lr: 0.01,
        momentum: 0.05,
        seed,
        lr_schedule: constant(),
        retrain_lr: None,
        retrain_momentum: None,
        weight_decay: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_stable_and_sensitive_to_every_field() {
        let a = sample(1, 100);
        assert_eq!(a.id(), sample(1, 100).id());
        assert_eq!(a.id().len(), 16);
        assert_ne!(a.id(), sample(2, 100).id());
        assert_ne!(a.id(), sample(1, 200).id());
        let mut b = a.clone();
        b.lr = 0.02;
        assert_ne!(a.id(), b.id());
        let mut c = a.clone();
        c.lr_schedule = "cosine".into();
        assert_ne!(a.id(), c.id());
        let mut d = a.clone();
        d.retrain_lr = Some(0.01);
        assert_ne!(a.id(), d.id());
        assert!(
            !a.canonical_json().contains("retrain_lr") && !a.canonical_json().contains("retrain_momentum")
        );
        // A constant schedule is not serialised: ids from before the field existed hold.
        assert!(!a.canonical_json().contains("lr_schedule"));
        assert_eq!(serde_json::from_str::<RunConfig>(&a.canonical_json()).unwrap(), a);
        // Pinned: a change here means every stored result would silently stop resuming.
        assert_eq!(short_hash(b"actprune"), "78c81a5a875b7427");
    }

    #[test]
    fn setting_key_ignores_only_the_seed() {
        assert_eq!(sample(1, 100).setting_key(), sample(7, 100).setting_key());
        assert_ne!(sample(1, 100).setting_key(), sample(1, 200).setting_key());
    }
}
