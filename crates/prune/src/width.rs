//! The optimum number of neurons per layer.
//!
//! (a) [`uniform_sweep`]: the same architecture with every prunable layer at width w,
//! for each w, trained from scratch; validation accuracy per width.
//! (b) [`activation_guided`]: train wide, keep each layer's significant neurons (by a
//! criterion and a per-round plan), retrain at those widths, and repeat until the
//! validation accuracy falls more than δ below the wide model's — first all layers
//! together, then each layer alone, optionally halving a layer's step after a rejected
//! round — and report the widths and accuracy of every round and the last accepted one
//! (the narrowest architecture within δ).

use mnist_io::Dataset;
use net::spec::{LayerSpec, spec_string};
use net::{Init, Model, TrainConfig, TrainObserver};

use crate::PruneError;
use crate::criteria::Criterion;
use crate::pipeline::{self, Job};
use crate::record::{Data, accuracy};
use crate::schedule::{Amount, Plan};
use crate::status::ConvDecision;
use crate::strategy::Strategy;
use crate::surgery::{prunable_layers, widths};

/// The spec of `model` with its prunable layers at `new_widths` (one per prunable layer).
///
/// # Errors
/// [`PruneError::Shape`] for a wrong count; [`PruneError::InvalidParameter`] for a zero width.
pub fn spec_with_widths(model: &Model, new_widths: &[usize]) -> Result<String, PruneError> {
    let prunable = prunable_layers(model)?;
    if new_widths.len() != prunable.len() {
        return Err(PruneError::Shape {
            context: "spec_with_widths: one width per prunable layer",
            expected: prunable.len(),
            got: new_widths.len(),
        });
    }
    if new_widths.contains(&0) {
        return Err(PruneError::InvalidParameter {
            name: "width",
            value: "0".into(),
            expected: "at least 1",
        });
    }
    let mut specs: Vec<LayerSpec> = model.layers().iter().map(|l| l.spec()).collect();
    for (p, &w) in prunable.iter().zip(new_widths) {
        match &mut specs[p.producer] {
            LayerSpec::Linear { out_features } => *out_features = w,
            LayerSpec::Conv2d { out_channels, .. } => *out_channels = w,
            _ => unreachable!("producers are Linear or Conv2d"),
        }
    }
    Ok(spec_string(&specs))
}

/// One trained architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct WidthPoint {
    /// Widths of the prunable layers.
    pub widths: Vec<usize>,
    /// Parameters.
    pub params: usize,
    /// Multiply-accumulates per image.
    pub macs: usize,
    /// Validation accuracy, in [0, 1].
    pub accuracy: f64,
    /// Whether the search kept this architecture (accuracy within δ of the wide model's);
    /// a rejected round leaves the widths of the last accepted one.
    pub accepted: bool,
}

struct Quiet;
impl TrainObserver for Quiet {}

/// Trains `base`'s architecture with every prunable layer at each width of `sweep`,
/// from scratch (`init`, `cfg.seed`), and measures validation accuracy.
///
/// # Errors
/// Spec, training and recording errors.
#[allow(clippy::too_many_arguments)]
pub fn uniform_sweep(
    base: &Model,
    sweep: &[usize],
    init: Init,
    train: &Dataset,
    train_indices: &[u32],
    val: &Data<'_>,
    cfg: &TrainConfig,
) -> Result<Vec<WidthPoint>, PruneError> {
    let n = prunable_layers(base)?.len();
    sweep
        .iter()
        .map(|&w| {
            let spec = spec_with_widths(base, &vec![w; n])?;
            let mut m = Model::from_spec(&spec, base.input_shape(), base.num_classes(), init, cfg.seed)?;
            net::train(&mut m, train, train_indices, None, cfg, &mut Quiet)?;
            Ok(WidthPoint {
                widths: widths(&m)?,
                params: m.param_count(),
                macs: m.macs(),
                accuracy: accuracy(&m, val)?,
                accepted: true,
            })
        })
        .collect()
}

/// Settings of [`activation_guided`].
pub struct Guided<'a> {
    /// Which neurons are significant.
    pub criterion: &'a dyn Criterion,
    /// What one round removes (e.g. `Amount::Ratio(0.5)`: half of each layer).
    pub plan: Plan,
    /// Stop when validation accuracy falls more than this below the wide model's
    /// (a fraction: 0.003 = 0.3 points).
    pub delta: f64,
    /// At most this many rounds.
    pub max_rounds: usize,
    /// Where each round's retraining starts (`Reinit` retrains the widths from scratch).
    pub strategy: Strategy,
    /// Retraining per round.
    pub train: TrainConfig,
    /// How a conv channel's decision is made.
    pub decision: ConvDecision,
    /// How many times a layer's step may be halved after a rejected round before the
    /// layer stops (0: a layer stops at its first rejected round of its own). A halved
    /// step removes the lowest-scoring `f/2` of the layer, where `f` is the fraction the
    /// rejected round removed: a plan that halves the layers each round can only land
    /// on widths a factor of two apart, and the width within δ usually lies between.
    pub refinements: usize,
}

/// The result of [`activation_guided`].
#[derive(Clone, Debug)]
pub struct GuidedReport {
    /// Round 0 is the wide model; then one entry per round run.
    pub rounds: Vec<WidthPoint>,
    /// Index into `rounds` of the last accepted round (the narrowest within δ).
    pub best: usize,
    /// The model of that round.
    pub model: Model,
}

/// Activation-guided width search from a trained `wide` model (see the module doc).
///
/// Layers are pruned together while that keeps the accuracy; after the first round
/// that does not, each layer still being pruned is tried alone, and a layer whose own
/// round falls below the tolerance keeps its last accepted width. Layers differ in
/// how much they can lose (in an MLP the last hidden layer usually far more than the
/// first), which a common step for every layer would not find.
///
/// # Errors
/// [`PruneError::InvalidParameter`] for a δ outside [0, 1]; job errors.
pub fn activation_guided(
    wide: &Model,
    train: &Dataset,
    train_indices: &[u32],
    val: &Data<'_>,
    cfg: &Guided<'_>,
) -> Result<GuidedReport, PruneError> {
    if !(0.0..=1.0).contains(&cfg.delta) {
        return Err(PruneError::InvalidParameter {
            name: "delta",
            value: cfg.delta.to_string(),
            expected: "an accuracy drop in [0, 1]",
        });
    }
    let baseline = accuracy(wide, val)?;
    let mut rounds = vec![WidthPoint {
        widths: widths(wide)?,
        params: wide.param_count(),
        macs: wide.macs(),
        accuracy: baseline,
        accepted: true,
    }];
    let layers = prunable_layers(wide)?.len();
    // The layers still being narrowed, in order.
    let mut active: Vec<usize> =
        (0..layers).filter(|l| cfg.plan.layers.as_ref().is_none_or(|ls| ls.contains(l))).collect();
    let mut together = active.len() > 1;
    let (mut best, mut current) = (0, wide.clone());
    let mut strategy = cfg.strategy.clone();
    // Per layer: the ratio it is pruned by once refined (`None`: the plan's amount), and
    // how many times its step was halved.
    let mut step: Vec<Option<f64>> = vec![None; layers];
    let mut halvings = vec![0usize; layers];
    while rounds.len() <= cfg.max_rounds && !active.is_empty() {
        let targets: Vec<Vec<usize>> =
            if together { vec![active.clone()] } else { active.iter().map(|&l| vec![l]).collect() };
        for target in targets {
            if rounds.len() > cfg.max_rounds {
                break;
            }
            let amount = match (target.as_slice(), together) {
                (&[l], false) => step[l].map_or_else(|| cfg.plan.amount.clone(), Amount::Ratio),
                _ => cfg.plan.amount.clone(),
            };
            let job = Job {
                criterion: cfg.criterion,
                plan: Plan { amount, layers: Some(target.clone()) },
                rounds: 1,
                strategy: strategy.clone(),
                train: cfg.train.clone(),
                decision: cfg.decision,
                search_steps: 8,
            };
            let out = pipeline::run(&current, train, train_indices, val, &job)?;
            let r = &out.rounds[0];
            let accepted = r.accuracy >= baseline - cfg.delta;
            if r.widths == rounds[best].widths {
                // The plan removes nothing more from these layers.
                active.retain(|l| !target.contains(l));
                continue;
            }
            rounds.push(WidthPoint {
                widths: r.widths.clone(),
                params: r.params,
                macs: r.macs,
                accuracy: r.accuracy,
                accepted,
            });
            if accepted {
                best = rounds.len() - 1;
                strategy = out.next_strategy;
                current = out.model;
            } else {
                // Each layer of a failed round goes on alone at half the step it failed
                // by, while refinements remain; a layer that failed alone then stops.
                let (before, after) = (&rounds[best].widths, &r.widths);
                for &l in &target {
                    if halvings[l] < cfg.refinements {
                        step[l] = Some((before[l] - after[l]) as f64 / before[l] as f64 / 2.0);
                        halvings[l] += 1;
                    } else if !together {
                        active.retain(|&a| a != l);
                    }
                }
                together = false;
            }
        }
    }
    Ok(GuidedReport { rounds, best, model: current })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criteria::apoz::Apoz;
    use crate::record::testdata;
    use crate::schedule::Amount;
    use net::Init;

    fn config(epochs: usize, seed: u64) -> TrainConfig {
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

    /// 300 striped 4×4 images of 3 classes: 200 to train on, 100 to validate on.
    fn stripes(dir: &std::path::Path) -> (Dataset, Vec<u32>, Vec<u32>) {
        (testdata::stripes(dir, "w", 300, 5), (0..200).collect(), (200..300).collect())
    }

    #[test]
    fn spec_with_widths_changes_only_prunable_layers() {
        let m = Model::from_spec("lenet5", [1, 28, 28], 10, Init::PyTorchDefault, 1).unwrap();
        let s = spec_with_widths(&m, &[2, 3, 4, 5]).unwrap();
        assert_eq!(s, "conv2k5p2,relu,pool2,conv3k5,relu,pool2,flatten,fc4,relu,fc5,relu,fc10");
        assert!(spec_with_widths(&m, &[2, 3]).is_err());
        assert!(spec_with_widths(&m, &[2, 3, 0, 1]).is_err());
    }

    #[test]
    fn sweep_and_guided_search_report_widths_and_accuracy() {
        let dir = tempfile::tempdir().unwrap();
        let (ds, train_idx, val_idx) = stripes(dir.path());
        let val = Data::new(&ds, &val_idx);
        let base = Model::from_spec("flatten,fc32,relu,fc32,relu,fc3", [1, 4, 4], 3, Init::KaimingNormal, 1)
            .unwrap();
        let sweep =
            uniform_sweep(&base, &[2, 8], Init::KaimingNormal, &ds, &train_idx, &val, &config(3, 1)).unwrap();
        assert_eq!(sweep.iter().map(|p| p.widths.clone()).collect::<Vec<_>>(), vec![vec![2, 2], vec![8, 8]]);
        assert!(sweep[1].accuracy > 0.9 && sweep[0].params < sweep[1].params);

        let mut wide = base.clone();
        net::train(&mut wide, &ds, &train_idx, None, &config(3, 1), &mut Quiet).unwrap();
        let g = Guided {
            criterion: &Apoz,
            plan: Plan::new(Amount::Ratio(0.5)),
            delta: 0.05,
            max_rounds: 6,
            strategy: Strategy::Reinit { init: Init::KaimingNormal, seed: 7 },
            train: config(3, 2),
            decision: ConvDecision::AboveMean,
            refinements: 0,
        };
        let rep = activation_guided(&wide, &ds, &train_idx, &val, &g).unwrap();
        assert_eq!(rep.rounds[0].widths, vec![32, 32]);
        assert!(rep.rounds.len() >= 3, "{:?}", rep.rounds);
        // Every round starts from the last accepted one and narrows some layers, never widens one.
        let mut last = rep.rounds[0].clone();
        for r in &rep.rounds[1..] {
            assert!(
                r.widths.iter().zip(&last.widths).all(|(a, b)| a <= b) && r.widths != last.widths,
                "{r:?}"
            );
            assert_eq!(r.accepted, r.accuracy >= rep.rounds[0].accuracy - 0.05);
            if r.accepted {
                last = r.clone();
            }
        }
        assert!(rep.best >= 1);
        assert_eq!(rep.rounds[rep.best].widths, last.widths, "the result is the last accepted round");
        assert_eq!(widths(&rep.model).unwrap(), rep.rounds[rep.best].widths);
    }

    /// The search from a trained 32-8 MLP on the stripes, removing 90% per round with no
    /// retraining and no tolerance.
    fn search_without_retraining(max_rounds: usize, refinements: usize) -> GuidedReport {
        let dir = tempfile::tempdir().unwrap();
        let (ds, train_idx, val_idx) = stripes(dir.path());
        let val = Data::new(&ds, &val_idx);
        let mut wide =
            Model::from_spec("flatten,fc32,relu,fc8,relu,fc3", [1, 4, 4], 3, Init::KaimingNormal, 1).unwrap();
        net::train(&mut wide, &ds, &train_idx, None, &config(3, 1), &mut Quiet).unwrap();
        let g = Guided {
            criterion: &Apoz,
            plan: Plan::new(Amount::Ratio(0.9)),
            delta: 0.0,
            max_rounds,
            strategy: Strategy::Finetune,
            train: config(0, 2),
            decision: ConvDecision::AboveMean,
            refinements,
        };
        activation_guided(&wide, &ds, &train_idx, &val, &g).unwrap()
    }

    #[test]
    fn a_failed_joint_round_is_retried_one_layer_at_a_time() {
        // Removing 90% without retraining loses accuracy in every layer: the joint round
        // fails, then each layer alone, each from the wide model's widths.
        let rep = search_without_retraining(3, 0);
        let w: Vec<Vec<usize>> = rep.rounds.iter().map(|r| r.widths.clone()).collect();
        assert_eq!(w, vec![vec![32, 8], vec![4, 1], vec![4, 8], vec![32, 1]], "{:?}", rep.rounds);
        assert!(rep.rounds[1..].iter().all(|r| !r.accepted));
        assert_eq!((rep.best, widths(&rep.model).unwrap()), (0, vec![32, 8]));
    }

    #[test]
    fn a_rejected_step_is_halved_per_layer() {
        let rep = search_without_retraining(12, 2);
        let w: Vec<Vec<usize>> = rep.rounds.iter().map(|r| r.widths.clone()).collect();
        // The joint round removes 28 of 32 and 7 of 8 and fails (as in the test above);
        // then each layer alone removes half that fraction: ⌊0.4375·32⌋ = 14, ⌊0.4375·8⌋ = 3.
        assert_eq!(w[..2], [vec![32, 8], vec![4, 1]], "{:?}", rep.rounds);
        assert!(!rep.rounds[1].accepted);
        assert_eq!(w[2], vec![18, 8], "{:?}", rep.rounds);
        let first = if rep.rounds[2].accepted { 18 } else { 32 };
        assert_eq!(w[3], vec![first, 5], "{:?}", rep.rounds);
        // Afterwards a layer's step only shrinks: each rejected round of a layer is
        // followed, while refinements remain, by one removing about half as much.
        let mut kept = vec![32usize, 8];
        let mut removed_last = [None::<usize>; 2];
        for r in &rep.rounds[2..] {
            let l = (0..2).find(|&l| r.widths[l] != kept[l]).expect("a round narrows a layer");
            let now = kept[l] - r.widths[l];
            if let Some(prev) = removed_last[l] {
                assert!(now <= prev, "layer {l} removed {now} after {prev}: {:?}", rep.rounds);
            }
            removed_last[l] = Some(now);
            if r.accepted {
                kept = r.widths.clone();
            }
        }
        assert_eq!(widths(&rep.model).unwrap(), rep.rounds[rep.best].widths);
    }
}
