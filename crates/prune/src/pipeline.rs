//! One pruning job end to end: record the activation status on the validation split,
//! score, choose by the plan, cut, retrain by the strategy; one-shot or in rounds.
//!
//! Iterative pruning with `rounds` = k removes, per round, the ratio that compounds to
//! the plan's ratio after k rounds (`1 − (1 − r)^(1/k)`) and retrains after each;
//! thresholds and max-drop apply as given in every round (max-drop against the
//! accuracy of the model before the first round).

use mnist_io::Dataset;
use net::{Model, TrainConfig, TrainObserver};

use crate::PruneError;
use crate::criteria::{Context, Criterion};
use crate::record::{Data, accuracy, record};
use crate::schedule::{Amount, Plan, max_drop};
use crate::status::ConvDecision;
use crate::strategy::Strategy;
use crate::surgery::{remove_neurons, widths};

/// A pruning job.
pub struct Job<'a> {
    /// The significance criterion.
    pub criterion: &'a dyn Criterion,
    /// How much and where, in total over all rounds.
    pub plan: Plan,
    /// Rounds of prune-and-retrain (1 = one-shot).
    pub rounds: usize,
    /// Where retraining starts from.
    pub strategy: Strategy,
    /// Retraining per round (`epochs` = 0 skips retraining).
    pub train: TrainConfig,
    /// How a conv channel's decision is made.
    pub decision: ConvDecision,
    /// Halvings of the max-drop search.
    pub search_steps: usize,
}

/// What one round did.
#[derive(Clone, Debug, PartialEq)]
pub struct Round {
    /// Round number, from 1.
    pub round: usize,
    /// Widths of the prunable layers after surgery.
    pub widths: Vec<usize>,
    /// Parameters after surgery.
    pub params: usize,
    /// Multiply-accumulates per image after surgery.
    pub macs: usize,
    /// Validation accuracy right after surgery, before retraining, in [0, 1].
    pub pruned_accuracy: f64,
    /// Validation accuracy after retraining, in [0, 1].
    pub accuracy: f64,
    /// The ratio chosen by a max-drop search (`None` for other amounts).
    pub ratio: Option<f64>,
}

/// The result of [`run`].
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The pruned, retrained model.
    pub model: Model,
    /// Validation accuracy of the unpruned model, in [0, 1].
    pub baseline_accuracy: f64,
    /// Widths of the unpruned model's prunable layers.
    pub baseline_widths: Vec<usize>,
    /// One entry per round.
    pub rounds: Vec<Round>,
    /// The strategy for a further round on `model` (a rewind snapshot cut like the model).
    pub next_strategy: Strategy,
}

struct Quiet;
impl TrainObserver for Quiet {}

fn per_round(plan: &Plan, rounds: usize) -> Plan {
    let k = rounds as f64;
    let step = |r: f64| 1.0 - (1.0 - r).powf(1.0 / k);
    let amount = match &plan.amount {
        Amount::Ratio(r) => Amount::Ratio(step(*r)),
        Amount::Global(r) => Amount::Global(step(*r)),
        Amount::Ratios(rs) => Amount::Ratios(rs.iter().map(|&r| step(r)).collect()),
        a @ (Amount::Threshold(_) | Amount::MaxDrop(_)) => a.clone(),
    };
    Plan { amount, layers: plan.layers.clone() }
}

/// Prunes `model` by `job`, deciding on `val` (the validation split) and retraining on
/// `train[train_indices]`.
///
/// # Errors
/// [`PruneError::InvalidParameter`] for zero rounds; plan, recording, surgery and
/// training errors.
pub fn run(
    model: &Model,
    train: &Dataset,
    train_indices: &[u32],
    val: &Data<'_>,
    job: &Job<'_>,
) -> Result<Outcome, PruneError> {
    if job.rounds == 0 {
        return Err(PruneError::InvalidParameter {
            name: "rounds",
            value: "0".into(),
            expected: "at least 1 round",
        });
    }
    let baseline_widths = widths(model)?;
    job.plan.validate(baseline_widths.len())?;
    let baseline = accuracy(model, val)?;
    let plan = per_round(&job.plan, job.rounds);
    let mut current = model.clone();
    let mut strategy = job.strategy.clone();
    let mut rounds = Vec::new();
    for round in 1..=job.rounds {
        let status = record(&current, val, job.decision)?;
        let cx = Context { status: Some(&status), model: Some(&current), data: Some(*val) };
        let scores = job.criterion.scores(&cx)?;
        let (masks, ratio) = match plan.amount {
            Amount::MaxDrop(delta) => {
                let found = max_drop(&scores, plan.layers.clone(), delta, baseline, job.search_steps, |m| {
                    accuracy(&remove_neurons(&current, m)?, val)
                })?;
                (found.masks, Some(found.ratio))
            }
            _ => (plan.masks(&scores)?, None),
        };
        let pruned = remove_neurons(&current, &masks)?;
        let pruned_accuracy = accuracy(&pruned, val)?;
        let mut next = strategy.start(&current, &masks, &pruned)?;
        if job.train.epochs > 0 || job.train.max_batches.is_some_and(|b| b > 0) {
            net::train(&mut next, train, train_indices, None, &job.train, &mut Quiet)?;
        }
        strategy = strategy.after(&masks)?;
        rounds.push(Round {
            round,
            widths: widths(&next)?,
            params: next.param_count(),
            macs: next.macs(),
            pruned_accuracy,
            accuracy: accuracy(&next, val)?,
            ratio,
        });
        current = next;
    }
    Ok(Outcome {
        model: current,
        baseline_accuracy: baseline,
        baseline_widths,
        rounds,
        next_strategy: strategy,
    })
}
