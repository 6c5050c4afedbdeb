//! `cargo xtask prune`: prune a trained model by a criterion and a schedule, decided
//! on the validation split, retrain by a strategy, and report before/after size,
//! speed and test accuracy (the test set is only measured, never used to decide).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use net::{Init, Model, TrainConfig};
use prune::pipeline::{Job, run as run_job};
use prune::strategy::Strategy;
use prune::{Amount, Data, Plan};

use crate::inspect::{decision, validation_split};

/// Options of `cargo xtask prune`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("amount").required(true).args(["ratio", "global", "threshold", "max_drop"])))]
pub struct Args {
    /// The trained model file.
    #[arg(long)]
    pub model_file: PathBuf,
    /// The folder with the four MNIST files.
    #[arg(long)]
    pub data: PathBuf,
    /// Significance criterion: apoz, entropy, mi, mi-pred, pattern, l1, random, taylor.
    #[arg(long)]
    pub criterion: String,
    /// Remove this fraction of every hidden layer's neurons, in [0, 1); or one
    /// comma-separated ratio per hidden layer (e.g. `0.5,0.5,0.8,0.8`).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub ratio: Option<Vec<f64>>,
    /// Remove this fraction of all hidden neurons, compared across layers after
    /// normalising each layer's scores, in [0, 1).
    #[arg(long, allow_negative_numbers = true)]
    pub global: Option<f64>,
    /// Remove neurons scoring below their layer's mean − T·σ (T = 1: Hu et al.'s APoZ rule).
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// Remove as much as possible while validation accuracy stays within D (a fraction,
    /// 0.003 = 0.3 points) of the unpruned model, in [0, 1].
    #[arg(long, allow_negative_numbers = true)]
    pub max_drop: Option<f64>,
    /// After pruning: finetune (keep weights), reinit (fresh weights), rewind (weights
    /// at initialisation, or from --rewind-from).
    #[arg(long, default_value = "finetune")]
    pub strategy: String,
    /// A model file of the same architecture to rewind to (e.g. saved at epoch k);
    /// default: the initialisation regenerated from the model file's metadata.
    #[arg(long)]
    pub rewind_from: Option<PathBuf>,
    /// Retraining epochs per round (0: no retraining).
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Rounds of prune-and-retrain (1 = one-shot); ratios compound to the total.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Seed of retraining (and of `random`, and of `reinit`).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Learning rate of retraining.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f32,
    /// SGD momentum of retraining.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Learning-rate schedule of retraining (per round): `constant`, `cosine` or `step:EVERY:GAMMA`.
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    /// Batch size of retraining.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Validation images held out of the training set (pruning decides on these).
    #[arg(long, default_value_t = 5000)]
    pub validation: usize,
    /// Seed of the train/validation split (default: the model file's `split_seed`, else 0).
    #[arg(long)]
    pub split_seed: Option<u64>,
    /// When a conv channel counts as on for an input: `above-mean`, `majority` or `any`.
    #[arg(long, default_value = "above-mean")]
    pub decision: String,
    /// Prune only these prunable layers (comma-separated, 0 = first hidden layer).
    #[arg(long, value_delimiter = ',')]
    pub layers: Option<Vec<usize>>,
    /// Where to write the pruned model.
    #[arg(long)]
    pub out: PathBuf,
    /// End with one JSON object (before/after params, MACs, test accuracy, images/s, widths).
    #[arg(long)]
    pub json: bool,
}

fn amount(args: &Args) -> anyhow::Result<Amount> {
    let in_unit = |flag: &str, v: f64| -> anyhow::Result<f64> {
        if v.is_finite() && (0.0..1.0).contains(&v) {
            Ok(v)
        } else {
            bail!("{flag} {v}: expected a fraction of neurons to remove in [0, 1)")
        }
    };
    Ok(if let Some(rs) = &args.ratio {
        for &r in rs {
            in_unit("--ratio", r)?;
        }
        match rs.as_slice() {
            [r] => Amount::Ratio(*r),
            _ => Amount::Ratios(rs.clone()),
        }
    } else if let Some(r) = args.global {
        Amount::Global(in_unit("--global", r)?)
    } else if let Some(t) = args.threshold {
        if !t.is_finite() {
            bail!("--threshold {t}: expected a finite number of standard deviations");
        }
        Amount::Threshold(t)
    } else if let Some(d) = args.max_drop {
        if !(d.is_finite() && (0.0..=1.0).contains(&d)) {
            bail!("--max-drop {d}: expected an accuracy drop in [0, 1] (0.003 = 0.3 points)");
        }
        Amount::MaxDrop(d)
    } else {
        bail!("one of --ratio, --global, --threshold, --max-drop is required")
    })
}

/// Test accuracy and the median inference speed of three passes over the test set,
/// after one warm-up pass (first-touch page faults and cold caches are not the model's).
fn measure(model: &Model, test: &mnist_io::Dataset) -> anyhow::Result<(f64, f64)> {
    net::evaluate(model, test, None, 256)?;
    let mut runs = (0..3).map(|_| net::evaluate(model, test, None, 256)).collect::<Result<Vec<_>, _>>()?;
    runs.sort_by(|a, b| a.images_per_second.total_cmp(&b.images_per_second));
    Ok((runs[1].accuracy, runs[1].images_per_second))
}

fn summary(model: &Model, acc: f64, ips: f64) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::json!({
        "spec": model.spec(), "params": model.param_count(), "macs": model.macs(),
        "test_accuracy": acc, "images_per_second": ips, "widths": prune::surgery::widths(model)?,
    }))
}

/// Runs `cargo xtask prune`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let plan = Plan { amount: amount(args)?, layers: args.layers.clone() };
    let decision = decision(&args.decision)?;
    if args.rounds == 0 {
        bail!("--rounds 0: expected at least 1");
    }
    if args.batch == 0 {
        bail!("--batch 0: expected at least 1");
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        bail!("--lr {}: expected a positive learning rate", args.lr);
    }
    if !(args.momentum.is_finite() && (0.0..1.0).contains(&args.momentum)) {
        bail!("--momentum {}: expected a momentum in [0, 1)", args.momentum);
    }
    let criterion = prune::criteria::by_name(&args.criterion, args.seed)
        .map_err(|e| anyhow::anyhow!("--criterion {}: {e}", args.criterion))?;
    let (model, meta) =
        net::load(&args.model_file).with_context(|| format!("--model-file {}", args.model_file.display()))?;
    let prunable = prune::surgery::prunable_layers(&model)?;
    plan.validate(prunable.len()).map_err(|e| match e {
        prune::PruneError::Shape { expected, got, .. } => {
            anyhow::anyhow!("--ratio: {got} ratios given, the model has {expected} hidden layers")
        }
        e => anyhow::anyhow!("--layers: {e}"),
    })?;
    let strategy = match args.strategy.as_str() {
        "finetune" => Strategy::Finetune,
        "reinit" => Strategy::Reinit { init: init_of(&meta), seed: args.seed },
        "rewind" => Strategy::Rewind { snapshot: rewind_point(args, &model, &meta)? },
        other => bail!("--strategy {other}: expected one of {}", prune::strategy::NAMES),
    };
    let mnist = mnist_io::Mnist::open(&args.data)
        .and_then(mnist_io::Mnist::into_resident)
        .with_context(|| format!("opening {}", args.data.display()))?;
    let (rows, cols) = mnist.train.image_dims();
    if model.input_shape() != [1, rows, cols] {
        bail!(
            "--data {}: its images are 1×{rows}×{cols}, the model of --model-file takes {:?} (C, H, W)",
            args.data.display(),
            model.input_shape()
        );
    }
    let split = validation_split(mnist.train.len(), args.validation, args.split_seed, &meta)?;
    let val = Data::new(&mnist.train, &split.validation);
    let train = TrainConfig {
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        momentum: args.momentum,
        schedule: crate::train::parse_schedule(&args.schedule)?,
        seed: args.seed,
        progress: !args.json,
        ..TrainConfig::default()
    };
    let job = Job {
        criterion: criterion.as_ref(),
        plan,
        rounds: args.rounds,
        strategy,
        train,
        decision,
        search_steps: 8,
    };
    let (before_acc, before_ips) = measure(&model, &mnist.test)?;
    let t = Instant::now();
    let out = run_job(&model, &mnist.train, &split.train, &val, &job)?;
    let seconds = t.elapsed().as_secs_f64();
    let (after_acc, after_ips) = measure(&out.model, &mnist.test)?;
    let mut extra = BTreeMap::new();
    extra.insert("pruned_from".to_string(), args.model_file.display().to_string());
    extra.insert("criterion".to_string(), args.criterion.clone());
    extra.insert("strategy".to_string(), args.strategy.clone());
    if let Some(s) = meta.get("split_seed") {
        extra.insert("split_seed".to_string(), s.clone());
    }
    net::save(&out.model, &args.out, &extra).with_context(|| format!("writing {}", args.out.display()))?;
    if !args.json {
        println!("validation accuracy before: {:.2}%", 100.0 * out.baseline_accuracy);
        for r in &out.rounds {
            println!(
                "round {}: widths {:?}, {} params, {} MACs; validation {:.2}% after surgery, {:.2}% after retraining{}",
                r.round,
                r.widths,
                r.params,
                r.macs,
                100.0 * r.pruned_accuracy,
                100.0 * r.accuracy,
                r.ratio.map(|x| format!(" (max-drop ratio {x:.3})")).unwrap_or_default()
            );
        }
        println!(
            "test accuracy {:.2}% → {:.2}%; params {} → {}; MACs {} → {}; {:.0} → {:.0} images/s; wrote {}",
            100.0 * before_acc,
            100.0 * after_acc,
            model.param_count(),
            out.model.param_count(),
            model.macs(),
            out.model.macs(),
            before_ips,
            after_ips,
            args.out.display()
        );
    }
    let rounds: Vec<serde_json::Value> = out
        .rounds
        .iter()
        .map(|r| {
            serde_json::json!({"round": r.round, "widths": r.widths, "params": r.params, "macs": r.macs,
                "pruned_validation_accuracy": r.pruned_accuracy, "validation_accuracy": r.accuracy, "ratio": r.ratio})
        })
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "criterion": args.criterion, "strategy": args.strategy, "seconds": seconds,
                "validation_accuracy_before": out.baseline_accuracy, "rounds": rounds,
                "before": summary(&model, before_acc, before_ips)?,
                "after": summary(&out.model, after_acc, after_ips)?,
            })
        );
    }
    Ok(())
}

fn init_of(meta: &BTreeMap<String, String>) -> Init {
    match meta.get("init").map(String::as_str) {
        Some("xavier-normal" | "XavierNormal") => Init::XavierNormal,
        Some("kaiming-normal" | "KaimingNormal") => Init::KaimingNormal,
        _ => Init::PyTorchDefault,
    }
}

/// The rewind point: `--rewind-from`, or the initialisation regenerated from the
/// model file's metadata (`spec`, `init`, `seed`).
fn rewind_point(args: &Args, model: &Model, meta: &BTreeMap<String, String>) -> anyhow::Result<Model> {
    if let Some(path) = &args.rewind_from {
        let (snap, _) =
            net::load(path).with_context(|| format!("loading --rewind-from {}", path.display()))?;
        if snap.spec() != model.spec() {
            bail!(
                "--rewind-from {}: architecture {} differs from the model's {}",
                path.display(),
                snap.spec(),
                model.spec()
            );
        }
        return Ok(snap);
    }
    let Some(seed) = meta.get("seed").and_then(|s| s.parse::<u64>().ok()) else {
        bail!("--strategy rewind: the model file has no `seed` metadata; pass --rewind-from FILE");
    };
    Ok(Model::from_spec(&model.spec(), model.input_shape(), model.num_classes(), init_of(meta), seed)?)
}
