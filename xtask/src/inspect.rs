//! `cargo xtask inspect`: per prunable layer of a model, how its neurons behave on the
//! validation split — neurons, dead, always-on, mean firing rate, mean decision
//! entropy — with the producing layer's MACs and parameters.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use prune::criteria::{Context, Criterion, entropy::Entropy};
use prune::{ConvDecision, Data, record};

/// Options of `cargo xtask inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The model file (safetensors, as written by `cargo xtask train`).
    #[arg(long)]
    pub model_file: PathBuf,
    /// The folder with the four MNIST files.
    #[arg(long)]
    pub data: PathBuf,
    /// Validation images held out of the training set (the split pruning decides on).
    #[arg(long, default_value_t = 5000)]
    pub validation: usize,
    /// Seed of the train/validation split (default: the model file's `split_seed`, else 0).
    #[arg(long)]
    pub split_seed: Option<u64>,
    /// When a conv channel counts as on for an input: `above-mean` (more positions fire
    /// than on average for that channel), `majority` of its positions, or `any`.
    #[arg(long, default_value = "above-mean")]
    pub decision: String,
    /// Print one JSON object per layer, then a summary object, instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Parses `--decision`.
pub fn decision(name: &str) -> anyhow::Result<ConvDecision> {
    match name {
        "above-mean" => Ok(ConvDecision::AboveMean),
        "majority" => Ok(ConvDecision::Majority),
        "any" => Ok(ConvDecision::Any),
        other => bail!("--decision {other}: expected `above-mean`, `majority` or `any`"),
    }
}

/// The validation indices a model file was trained without: `--validation` images
/// split off by `--split-seed`, defaulting to the file's metadata.
pub fn validation_split(
    train_len: usize,
    validation: usize,
    split_seed: Option<u64>,
    meta: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<mnist_io::Split> {
    if validation == 0 || validation >= train_len {
        bail!("--validation {validation}: expected a count in [1, {})", train_len);
    }
    let seed = match split_seed {
        Some(s) => s,
        None => meta.get("split_seed").and_then(|s| s.parse().ok()).unwrap_or(0),
    };
    match meta.get("validation").and_then(|v| v.parse::<usize>().ok()) {
        Some(held) if held > 0 && split_seed.is_none() && held != validation => eprintln!(
            "note: the model held out {held} images but --validation is {validation}: \
             some of the images decided on were seen in training"
        ),
        Some(0) => eprintln!(
            "note: the model was trained on every training image (`train --validation 0`), \
             so the validation split decided on was seen in training"
        ),
        _ => {}
    }
    Ok(mnist_io::split(train_len, validation, seed))
}

/// Runs `cargo xtask inspect`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let decision = decision(&args.decision)?;
    let (model, meta) =
        net::load(&args.model_file).with_context(|| format!("loading {}", args.model_file.display()))?;
    let mnist =
        mnist_io::Mnist::open(&args.data).with_context(|| format!("opening {}", args.data.display()))?;
    let split = validation_split(mnist.train.len(), args.validation, args.split_seed, &meta)?;
    let data = Data::new(&mnist.train, &split.validation);
    let status = record(&model, &data, decision)?;
    let entropy = Entropy.scores(&Context::from_status(&status))?;
    let prunable = prune::surgery::prunable_layers(&model)?;
    if !args.json {
        println!("model {} — {} params, {} MACs per image", model.spec(), model.param_count(), model.macs());
        println!("validation: {} images, accuracy {:.2}%", status.inputs(), 100.0 * status.accuracy());
        println!(
            "{:>5} {:>7} {:>7} {:>5} {:>9} {:>10} {:>12} {:>10} {:>10}",
            "layer", "kind", "neurons", "dead", "always-on", "firing", "entropy/bit", "MACs", "params"
        );
    }
    for ((p, l), h) in prunable.iter().zip(&status.layers).zip(&entropy) {
        let firing = (0..l.neurons).map(|j| l.firing_rate(j)).sum::<f64>() / l.neurons as f64;
        let mean_h = h.iter().sum::<f64>() / h.len() as f64;
        let kind = if p.conv { "conv" } else { "dense" };
        let (macs, params) = (model.layer_macs(p.producer), model.layer_params(p.producer));
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "layer": p.producer, "kind": kind, "neurons": l.neurons, "dead": l.dead(),
                    "always_on": l.always_on(), "mean_firing_rate": firing, "mean_decision_entropy": mean_h,
                    "macs": macs, "params": params,
                })
            );
        } else {
            println!(
                "{:>5} {:>7} {:>7} {:>5} {:>9} {:>10.4} {:>12.4} {:>10} {:>10}",
                p.producer,
                kind,
                l.neurons,
                l.dead(),
                l.always_on(),
                firing,
                mean_h,
                macs,
                params
            );
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "spec": model.spec(), "params": model.param_count(), "macs": model.macs(),
                "validation_images": status.inputs(), "validation_accuracy": status.accuracy(),
                "widths": status.layers.iter().map(|l| l.neurons).collect::<Vec<_>>(),
            })
        );
    }
    Ok(())
}
