//! What happens after surgery (the thesis' post-pruning re-initialisation):
//! - `Finetune`: keep the surviving weights and train on;
//! - `Reinit`: fresh random weights at the pruned architecture, trained from scratch
//!   (Liu et al., "Rethinking the Value of Network Pruning", 2019);
//! - `Rewind`: the survivors reset to their values at initialisation or at epoch k
//!   (Frankle & Carbin, "The Lottery Ticket Hypothesis", 2019). The snapshot is kept
//!   during the original training by [`Snapshot`] (a `net::TrainObserver`), and the
//!   same surgery is applied to it, so exactly the surviving neurons are rewound.

use net::{EpochStats, Init, Model, TrainObserver};

use crate::PruneError;
use crate::surgery::remove_neurons;

/// How the pruned architecture gets its starting weights before retraining.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// Keep the surviving weights.
    Finetune,
    /// New weights drawn by `init` from `seed`.
    Reinit {
        /// The initialisation scheme.
        init: Init,
        /// Its seed.
        seed: u64,
    },
    /// The surviving neurons' weights from `snapshot`, a copy of the model being pruned
    /// (same architecture) taken at initialisation or at some epoch.
    Rewind {
        /// The earlier copy of the unpruned model.
        snapshot: Model,
    },
}

/// The accepted strategy names.
pub const NAMES: &str = "finetune, reinit, rewind";

impl Strategy {
    /// The short name (`finetune`, `reinit`, `rewind`).
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Finetune => "finetune",
            Strategy::Reinit { .. } => "reinit",
            Strategy::Rewind { .. } => "rewind",
        }
    }

    /// The model retraining starts from, given the model before surgery (`original`),
    /// the keep masks that were applied and the pruned model.
    ///
    /// # Errors
    /// [`PruneError::Shape`] when a rewind snapshot does not have `original`'s
    /// architecture; errors of surgery or model construction.
    pub fn start(&self, original: &Model, masks: &[Vec<bool>], pruned: &Model) -> Result<Model, PruneError> {
        match self {
            Strategy::Finetune => Ok(pruned.clone()),
            Strategy::Reinit { init, seed } => Ok(Model::from_spec(
                &pruned.spec(),
                pruned.input_shape(),
                pruned.num_classes(),
                *init,
                *seed,
            )?),
            Strategy::Rewind { snapshot } => {
                if snapshot.spec() != original.spec() || snapshot.input_shape() != original.input_shape() {
                    return Err(PruneError::Shape {
                        context: "rewind snapshot must have the pruned model's original architecture",
                        expected: original.param_count(),
                        got: snapshot.param_count(),
                    });
                }
                remove_neurons(snapshot, masks)
            }
        }
    }

    /// The strategy to use for the next round of iterative pruning after `masks` were
    /// applied: a rewind snapshot is cut the same way; a reinit seed moves on.
    pub fn after(&self, masks: &[Vec<bool>]) -> Result<Strategy, PruneError> {
        Ok(match self {
            Strategy::Finetune => Strategy::Finetune,
            Strategy::Reinit { init, seed } => Strategy::Reinit { init: *init, seed: seed.wrapping_add(1) },
            Strategy::Rewind { snapshot } => Strategy::Rewind { snapshot: remove_neurons(snapshot, masks)? },
        })
    }
}

/// A `TrainObserver` that keeps a copy of the model at the end of epoch `epoch`
/// (1-based); for a rewind to initialisation, clone the model before training instead.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The epoch whose end is captured.
    pub epoch: usize,
    /// The copy, once taken.
    pub model: Option<Model>,
}

impl TrainObserver for Snapshot {
    fn on_epoch_end(&mut self, model: &Model, stats: &EpochStats) {
        if stats.epoch == self.epoch {
            self.model = Some(model.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{self, Job};
    use crate::record::{Data, accuracy, testdata};
    use crate::schedule::{Amount, Plan};
    use crate::status::ConvDecision;
    use crate::surgery::widths;
    use net::{Layer, TrainConfig};

    pub(crate) fn config(epochs: usize, seed: u64) -> TrainConfig {
        TrainConfig {
            epochs,
            batch: 16,
            lr: 0.05,
            momentum: 0.9,
            seed,
            progress: false,
            ..TrainConfig::default()
        }
    }

    fn setup(dir: &std::path::Path) -> (mnist_io::Dataset, Model, Model) {
        let ds = testdata::stripes(dir, "s", 300, 3);
        let init = Model::from_spec("flatten,fc16,relu,fc12,relu,fc3", [1, 4, 4], 3, Init::KaimingNormal, 1)
            .unwrap();
        let mut trained = init.clone();
        let idx: Vec<u32> = (0..200).collect();
        net::train(&mut trained, &ds, &idx, None, &config(3, 1), &mut Snapshot::default()).unwrap();
        (ds, init, trained)
    }

    fn halve(m: &Model) -> Vec<Vec<bool>> {
        widths(m).unwrap().iter().map(|&n| (0..n).map(|j| j % 2 == 0).collect()).collect()
    }

    #[test]
    fn each_strategy_starts_where_it_should_and_retrains() {
        let dir = tempfile::tempdir().unwrap();
        let (ds, init, trained) = setup(dir.path());
        let (train_idx, val_idx): (Vec<u32>, Vec<u32>) = ((0..200).collect(), (200..300).collect());
        let val = Data::new(&ds, &val_idx);
        assert!(accuracy(&trained, &val).unwrap() > 0.9, "the stripes task is easy");
        let masks = halve(&trained);
        let pruned = crate::surgery::remove_neurons(&trained, &masks).unwrap();

        let ft = Strategy::Finetune.start(&trained, &masks, &pruned).unwrap();
        assert_eq!(ft, pruned);
        let re =
            Strategy::Reinit { init: Init::KaimingNormal, seed: 9 }.start(&trained, &masks, &pruned).unwrap();
        assert_eq!(re.spec(), pruned.spec());
        assert_ne!(re, pruned);
        let rw = Strategy::Rewind { snapshot: init.clone() }.start(&trained, &masks, &pruned).unwrap();
        assert_eq!(rw, crate::surgery::remove_neurons(&init, &masks).unwrap());
        // The rewound first layer holds rows 0, 2, 4, … of the initial weights.
        if let (Layer::Linear(a), Layer::Linear(b)) = (&rw.layers()[1], &init.layers()[1]) {
            assert_eq!(a.weight[16..32], b.weight[32..48]);
        } else {
            panic!("layer 1 is the first Linear");
        }
        for mut start in [ft, re, rw] {
            net::train(&mut start, &ds, &train_idx, None, &config(3, 2), &mut Snapshot::default()).unwrap();
            let acc = accuracy(&start, &val).unwrap();
            assert!(acc > 0.9, "retrained accuracy {acc}");
        }
    }

    #[test]
    fn snapshot_keeps_the_requested_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let ds = testdata::stripes(dir.path(), "s", 100, 3);
        let mut m = Model::from_spec("flatten,fc8,relu,fc3", [1, 4, 4], 3, Init::KaimingNormal, 1).unwrap();
        let init = m.clone();
        let idx: Vec<u32> = (0..100).collect();
        let mut snap = Snapshot { epoch: 1, model: None };
        net::train(&mut m, &ds, &idx, None, &config(2, 1), &mut snap).unwrap();
        let at1 = snap.model.expect("epoch 1 captured");
        assert_ne!(at1, init);
        assert_ne!(at1, m);
        // Training one epoch from the same start gives the same snapshot.
        let mut one = init.clone();
        net::train(&mut one, &ds, &idx, None, &config(1, 1), &mut Snapshot::default()).unwrap();
        assert_eq!(one, at1);
        let wrong = Strategy::Rewind {
            snapshot: Model::from_spec("flatten,fc9,relu,fc3", [1, 4, 4], 3, Init::KaimingNormal, 1).unwrap(),
        };
        assert!(wrong.start(&m, &halve(&m), &m).is_err());
    }

    #[test]
    fn iterative_rounds_compound_to_the_plan_and_rewind_follows() {
        let dir = tempfile::tempdir().unwrap();
        let (ds, init, trained) = setup(dir.path());
        let (train_idx, val_idx): (Vec<u32>, Vec<u32>) = ((0..200).collect(), (200..300).collect());
        let val = Data::new(&ds, &val_idx);
        let apoz = crate::criteria::apoz::Apoz;
        for strategy in [Strategy::Finetune, Strategy::Rewind { snapshot: init.clone() }] {
            let job = Job {
                criterion: &apoz,
                plan: Plan::new(Amount::Ratio(0.75)),
                rounds: 2,
                strategy,
                train: config(2, 3),
                decision: ConvDecision::AboveMean,
                search_steps: 6,
            };
            let out = pipeline::run(&trained, &ds, &train_idx, &val, &job).unwrap();
            // 1 − √0.25 = 0.5 per round: 16 → 8 → 4 and 12 → 6 → 3.
            assert_eq!(
                out.rounds.iter().map(|r| r.widths.clone()).collect::<Vec<_>>(),
                vec![vec![8, 6], vec![4, 3]]
            );
            assert_eq!(widths(&out.model).unwrap(), vec![4, 3]);
            assert!(out.rounds[1].accuracy > 0.85, "{:?}", out.rounds);
            if let Strategy::Rewind { snapshot } = &out.next_strategy {
                assert_eq!(widths(snapshot).unwrap(), vec![4, 3]);
            }
        }
    }

    #[test]
    fn max_drop_keeps_validation_accuracy_within_delta() {
        let dir = tempfile::tempdir().unwrap();
        let (ds, _, trained) = setup(dir.path());
        let (train_idx, val_idx): (Vec<u32>, Vec<u32>) = ((0..200).collect(), (200..300).collect());
        let val = Data::new(&ds, &val_idx);
        let mi = crate::criteria::mi::MutualInformation::default();
        let job = Job {
            criterion: &mi,
            plan: Plan::new(Amount::MaxDrop(0.02)),
            rounds: 1,
            strategy: Strategy::Finetune,
            train: config(0, 3),
            decision: ConvDecision::AboveMean,
            search_steps: 6,
        };
        let out = pipeline::run(&trained, &ds, &train_idx, &val, &job).unwrap();
        let r = &out.rounds[0];
        assert!(r.pruned_accuracy >= out.baseline_accuracy - 0.02);
        assert!(r.ratio.unwrap() > 0.0, "some neurons of this over-wide net are expendable: {r:?}");
        assert!(r.params < trained.param_count());
    }
}
