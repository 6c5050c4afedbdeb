//! One run, end to end, on the real libraries: pre-train (`net`), record the
//! activation status on the validation split and prune (`prune`), retrain by the
//! strategy, evaluate on the test set; measure accuracy, MACs and speed.
//!
//! Pre-trained models are cached in the sweep directory (`models/<key>.safetensors`,
//! key = the hash of everything that determines pre-training), so the criteria ×
//! strategies × ratios that start from one trained model train it once, and a
//! resumed sweep does not train it again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, bail};
use indicatif::ProgressBar;
use mnist_io::Mnist;
use net::{EpochStats, Init, Model, TrainConfig, TrainObserver};
use prune::criteria::{self, Context};
use prune::schedule::{Amount, Plan, max_drop};
use prune::status::ConvDecision;
use prune::strategy::Strategy;
use prune::surgery::{remove_neurons, widths};
use prune::width::{Guided, activation_guided};
use prune::{Data, accuracy, record};

use super::config::{RunConfig, short_hash};
use super::store::{Metrics, SearchRound, Timings};
use super::sweep::Executor;

/// Bins of the firing-rate histograms over [0, 1].
pub const FIRING_BINS: usize = 20;

/// Test-set evaluation batch (a unit of parallel work).
const EVAL_BATCH: usize = 1000;

/// Runs configs on a dataset.
pub struct Pipeline<'d> {
    mnist: &'d Mnist,
}

impl<'d> Pipeline<'d> {
    /// A pipeline over `mnist`.
    pub fn new(mnist: &'d Mnist) -> Pipeline<'d> {
        Pipeline { mnist }
    }
}

/// Collects the seconds of every epoch.
#[derive(Default)]
struct EpochTimes(Vec<f64>);

impl TrainObserver for EpochTimes {
    fn on_epoch_end(&mut self, _model: &Model, stats: &EpochStats) {
        self.0.push(stats.seconds);
    }
}

/// How to prune, parsed from `RunConfig::schedule`.
enum Schedule {
    None,
    Amount(Amount),
    /// Activation-guided search: the accuracy drop δ, what one round removes, and how
    /// often a layer's step may be halved after a rejected round (`:refine:N`).
    Search(f64, Amount, usize),
}

fn parse_schedule(s: &str) -> anyhow::Result<Schedule> {
    let num = |v: &str| v.parse::<f64>().with_context(|| format!("schedule `{s}`: `{v}` is not a number"));
    let amount = |kind: &str, v: &str| -> anyhow::Result<Option<Amount>> {
        Ok(Some(match kind {
            "ratio" => Amount::Ratio(num(v)?),
            "global" => Amount::Global(num(v)?),
            "threshold" => Amount::Threshold(num(v)?),
            "max-drop" => Amount::MaxDrop(num(v)?),
            _ => return Ok(None),
        }))
    };
    let unknown = || {
        anyhow::anyhow!(
            "unknown schedule `{s}` (none, ratio:R, global:R, threshold:T, max-drop:D, search:D, \
             search:D:ratio:R, search:D:global:R, search:D:threshold:T, each search optionally \
             followed by :refine:N)"
        )
    };
    Ok(match s.split_once(':') {
        None if s == "none" => Schedule::None,
        Some(("search", rest)) => {
            let (rest, refinements) = match rest.rsplit_once(":refine:") {
                Some((r, n)) => {
                    (r, n.parse().with_context(|| format!("schedule `{s}`: `{n}` is not a count"))?)
                }
                None => (rest, 0),
            };
            match rest.split_once(':') {
                // Version-1 recipes wrote `search:D`: 30% of every layer per round.
                None => Schedule::Search(num(rest)?, Amount::Ratio(0.3), refinements),
                Some((delta, round)) => {
                    let (kind, v) = round.split_once(':').ok_or_else(unknown)?;
                    match amount(kind, v)? {
                        Some(Amount::MaxDrop(_)) | None => return Err(unknown()),
                        Some(a) => Schedule::Search(num(delta)?, a, refinements),
                    }
                }
            }
        }
        Some((kind, v)) => Schedule::Amount(amount(kind, v)?.ok_or_else(unknown)?),
        None => return Err(unknown()),
    })
}

/// The training config of `epochs` (fractional: whole epochs plus a batch budget) for `c`.
///
/// # Errors
/// An unknown `lr_schedule`.
fn train_config(c: &RunConfig, epochs: f64, images: usize, seed: u64) -> anyhow::Result<TrainConfig> {
    let per_epoch = images.div_ceil(c.batch.max(1));
    let whole = epochs.ceil() as usize;
    let max_batches = if epochs.fract() == 0.0 {
        None
    } else {
        Some(((epochs * per_epoch as f64).round() as usize).max(1))
    };
    Ok(TrainConfig {
        epochs: whole,
        max_batches,
        batch: c.batch,
        lr: c.lr,
        momentum: c.momentum,
        weight_decay: c.weight_decay,
        schedule: crate::train::parse_schedule(&c.lr_schedule)?,
        seed,
        progress: false,
        ..TrainConfig::default()
    })
}

/// A histogram of `rates` (each in [0, 1]) in `FIRING_BINS` bins.
pub fn histogram(rates: impl Iterator<Item = f64>) -> Vec<u32> {
    let mut h = vec![0u32; FIRING_BINS];
    for r in rates {
        let b = ((r * FIRING_BINS as f64) as usize).min(FIRING_BINS - 1);
        h[b] += 1;
    }
    h
}

impl Executor for Pipeline<'_> {
    fn run(&mut self, c: &RunConfig, dir: &Path, bar: &ProgressBar) -> anyhow::Result<(Metrics, Timings)> {
        let (train_ds, test_ds) = (&self.mnist.train, &self.mnist.test);
        let (h, w) = train_ds.image_dims();
        let input = [1, h, w];
        let classes = train_ds.num_classes().max(test_ds.num_classes());
        let split = mnist_io::split(train_ds.len(), c.validation, c.seed);
        let mut train_idx = split.train;
        if c.train_images > 0 && c.train_images < train_idx.len() {
            // A seeded subset; the per-epoch orders use small epoch numbers, this one does not.
            train_idx = mnist_io::shuffled(&train_idx, c.seed, u64::MAX)[..c.train_images].to_vec();
            train_idx.sort_unstable();
        }
        let val = Data::new(train_ds, &split.validation);
        let init = Init::PyTorchDefault;
        let mut metrics = Metrics::default();
        let mut timings = Timings::default();

        // Pre-training, cached.
        bar.set_message(format!("{} seed {}: pre-training", c.model, c.seed));
        let initial = Model::from_spec(&c.model, input, classes, init, c.seed)?;
        let mut key_fields = serde_json::json!([
            c.model,
            c.pretrain_epochs,
            c.train_images,
            c.validation,
            c.batch,
            c.lr,
            c.momentum,
            c.seed
        ]);
        if c.lr_schedule != "constant" {
            // Only then: the caches of sweeps from before the field existed stay valid.
            key_fields.as_array_mut().expect("an array").push(c.lr_schedule.clone().into());
        }
        if c.weight_decay != 0.0 {
            // Likewise appended only when set.
            key_fields
                .as_array_mut()
                .expect("an array")
                .push(serde_json::json!({ "weight_decay": c.weight_decay }));
        }
        let key = short_hash(key_fields.to_string().as_bytes());
        let cache = dir.join("models").join(format!("{key}.safetensors"));
        let model = match net::load(&cache) {
            Ok((m, meta)) => {
                timings.pretrain_epoch_seconds =
                    meta.get("epoch_seconds").and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
                m
            }
            Err(_) => {
                let mut m = initial.clone();
                let cfg = train_config(c, c.pretrain_epochs, train_idx.len(), c.seed)?;
                let mut times = EpochTimes::default();
                net::train(&mut m, train_ds, &train_idx, None, &cfg, &mut times)?;
                std::fs::create_dir_all(cache.parent().expect("cache has a parent"))?;
                let meta = BTreeMap::from([("epoch_seconds".to_string(), serde_json::to_string(&times.0)?)]);
                net::save(&m, &cache, &meta)?;
                timings.pretrain_epoch_seconds = times.0;
                m
            }
        };
        let trained = net::evaluate(&model, test_ds, None, EVAL_BATCH)?;
        metrics.trained_accuracy = trained.accuracy;
        metrics.images_per_second_before = trained.images_per_second;
        metrics.params_before = model.param_count();
        metrics.macs_before = model.macs();

        // Firing rates of the trained model on the validation split.
        bar.set_message(format!("{} seed {}: pruning", c.model, c.seed));
        let started = Instant::now();
        let status = record(&model, &val, ConvDecision::Majority)?;
        metrics.firing_histograms =
            status.layers.iter().map(|l| histogram((0..l.neurons).map(|j| l.firing_rate(j)))).collect();

        let mut retrain = train_config(c, c.retrain_epochs as f64, train_idx.len(), c.seed.wrapping_add(1))?;
        retrain.lr = c.retrain_lr.unwrap_or(c.lr);
        retrain.momentum = c.retrain_momentum.unwrap_or(c.momentum);
        let strategy = match c.strategy.as_str() {
            "finetune" | "none" => Strategy::Finetune,
            "reinit" => Strategy::Reinit { init, seed: c.seed.wrapping_add(0x5EED) },
            "rewind" => Strategy::Rewind { snapshot: initial },
            s => bail!("unknown strategy `{s}`"),
        };
        let final_model = match parse_schedule(&c.schedule)? {
            Schedule::None => {
                timings.prune_seconds = started.elapsed().as_secs_f64();
                model
            }
            Schedule::Amount(amount) => {
                let criterion = criteria::by_name(&c.criterion, c.seed)?;
                let cx = Context { status: Some(&status), model: Some(&model), data: Some(val) };
                let scores = criterion.scores(&cx)?;
                let masks = match amount {
                    Amount::MaxDrop(delta) => {
                        let baseline = accuracy(&model, &val)?;
                        max_drop(&scores, None, delta, baseline, 8, |m| {
                            accuracy(&remove_neurons(&model, m)?, &val)
                        })?
                        .masks
                    }
                    a => Plan::new(a).masks(&scores)?,
                };
                let pruned = remove_neurons(&model, &masks)?;
                timings.prune_seconds = started.elapsed().as_secs_f64();
                metrics.pruned_accuracy = Some(net::evaluate(&pruned, test_ds, None, EVAL_BATCH)?.accuracy);
                let mut next = strategy.start(&model, &masks, &pruned)?;
                if c.retrain_epochs > 0 {
                    bar.set_message(format!("{} seed {}: retraining {:?}", c.model, c.seed, widths(&next)?));
                    let mut times = EpochTimes::default();
                    net::train(&mut next, train_ds, &train_idx, None, &retrain, &mut times)?;
                    timings.retrain_epoch_seconds = times.0;
                }
                next
            }
            Schedule::Search(delta, per_round, refinements) => {
                let criterion = criteria::by_name(&c.criterion, c.seed)?;
                let g = Guided {
                    criterion: criterion.as_ref(),
                    plan: Plan::new(per_round),
                    delta,
                    // Refined steps take more, smaller rounds.
                    max_rounds: if refinements == 0 { 12 } else { 24 },
                    strategy,
                    train: retrain,
                    decision: ConvDecision::Majority,
                    refinements,
                };
                let report = activation_guided(&model, train_ds, &train_idx, &val, &g)?;
                timings.prune_seconds = started.elapsed().as_secs_f64();
                metrics.search_rounds = report
                    .rounds
                    .iter()
                    .map(|r| SearchRound {
                        hidden: r.widths.clone(),
                        validation_accuracy: r.accuracy,
                        macs: r.macs,
                        accepted: Some(r.accepted),
                    })
                    .collect();
                report.model
            }
        };
        let fin = net::evaluate(&final_model, test_ds, None, EVAL_BATCH)?;
        metrics.test_accuracy = fin.accuracy;
        metrics.test_loss = fin.loss;
        metrics.images_per_second = fin.images_per_second;
        metrics.hidden_after = widths(&final_model)?;
        metrics.params_after = final_model.param_count();
        metrics.macs_after = final_model.macs();
        Ok((metrics, timings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_reject() {
        assert!(matches!(parse_schedule("none").unwrap(), Schedule::None));
        assert!(
            matches!(parse_schedule("ratio:0.5").unwrap(), Schedule::Amount(Amount::Ratio(r)) if r == 0.5)
        );
        assert!(matches!(parse_schedule("max-drop:0.005").unwrap(), Schedule::Amount(Amount::MaxDrop(_))));
        assert!(matches!(
            parse_schedule("search:0.003").unwrap(),
            Schedule::Search(d, Amount::Ratio(r), 0) if d == 0.003 && r == 0.3
        ));
        assert!(matches!(
            parse_schedule("search:0.005:threshold:0.5").unwrap(),
            Schedule::Search(d, Amount::Threshold(t), 0) if d == 0.005 && t == 0.5
        ));
        assert!(matches!(
            parse_schedule("search:0.002:threshold:0:refine:3").unwrap(),
            Schedule::Search(d, Amount::Threshold(t), 3) if d == 0.002 && t == 0.0
        ));
        assert!(matches!(parse_schedule("search:0.002:refine:2").unwrap(), Schedule::Search(_, _, 2)));
        assert!(parse_schedule("search:0.002:threshold:0:refine:x").is_err());
        assert!(parse_schedule("search:0.002:threshold:0:refine").is_err());
        assert!(parse_schedule("search:0.005:max-drop:0.1").is_err());
        assert!(parse_schedule("search:0.005:half").is_err());
        assert!(parse_schedule("search:x").is_err());
        assert!(parse_schedule("ratio:x").is_err());
        assert!(parse_schedule("half").is_err());
    }

    #[test]
    fn fractional_epochs_become_a_batch_budget() {
        let c = crate::experiment::config::sample(1, 100);
        let quarter = train_config(&c, 0.25, 6400, 1).unwrap();
        assert_eq!((quarter.epochs, quarter.max_batches), (1, Some(25)));
        let two = train_config(&c, 2.0, 6400, 1).unwrap();
        assert_eq!((two.epochs, two.max_batches, two.lr, two.momentum), (2, None, 0.01, 0.05));
    }

    #[test]
    fn histogram_bins_cover_zero_to_one() {
        let h = histogram([0.0, 0.04, 0.05, 0.5, 0.999, 1.0].into_iter());
        assert_eq!(h.len(), FIRING_BINS);
        assert_eq!((h[0], h[1], h[10], h[19]), (2, 1, 1, 2));
        assert_eq!(h.iter().sum::<u32>(), 6);
    }
}
