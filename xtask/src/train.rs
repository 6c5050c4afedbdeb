//! `cargo xtask train`: trains a model from a spec on an IDX dataset (MNIST by
//! default), evaluating on the test set after each epoch, and saves it as safetensors.
//!
//! With `--json` the last line printed is one JSON object: `test_accuracy`, `test_loss`,
//! `epoch_seconds` (a list), `images_per_second`, `params`, `macs` (per image), and more.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use net::sgd::Schedule;
use net::{Init, Model, TrainConfig};

/// Arguments of `cargo xtask train`.
#[derive(clap::Args)]
pub struct Args {
    /// Model spec: `lenet5`, `mlp:784-600-600-10`, or the general form
    /// `conv6k5p2,relu,pool2,flatten,fc120,relu,fc10`.
    #[arg(long, default_value = "lenet5")]
    model: String,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Stop after this many batches in total (fractional-epoch budgets).
    #[arg(long)]
    max_batches: Option<usize>,
    /// Hold this many training images out (split by `--seed`) and train on the rest; the
    /// model file records the split, so `prune` and `inspect` decide on images the model
    /// never saw. 0 trains on every image.
    #[arg(long, default_value_t = 0)]
    validation: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f32,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.0)]
    momentum: f32,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Nesterov momentum.
    #[arg(long)]
    nesterov: bool,
    /// Learning-rate schedule: `constant`, `cosine` or `step:EVERY:GAMMA`.
    #[arg(long, default_value = "constant")]
    schedule: String,
    /// Initialisation: `pytorch`, `xavier` or `kaiming`.
    #[arg(long, default_value = "pytorch")]
    init: String,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Seed of initialisation and shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Folder with the four IDX files (default `data/mnist`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to save the trained model (safetensors).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

/// Parses `--init`.
pub fn parse_init(s: &str) -> anyhow::Result<Init> {
    Ok(match s {
        "pytorch" => Init::PyTorchDefault,
        "xavier" => Init::XavierNormal,
        "kaiming" => Init::KaimingNormal,
        _ => bail!("unknown --init `{s}` (expected pytorch, xavier or kaiming)"),
    })
}

/// Parses `--schedule`.
pub fn parse_schedule(s: &str) -> anyhow::Result<Schedule> {
    Ok(match s.split(':').collect::<Vec<_>>().as_slice() {
        ["constant"] => Schedule::Constant,
        ["cosine"] => Schedule::Cosine,
        ["step", every, gamma] => Schedule::Step {
            every: every.parse().context("--schedule step:EVERY:GAMMA, EVERY")?,
            gamma: gamma.parse().context("--schedule step:EVERY:GAMMA, GAMMA")?,
        },
        _ => bail!("unknown --schedule `{s}` (expected constant, cosine or step:EVERY:GAMMA)"),
    })
}

/// The data folder: `--data` or `data/mnist` under the workspace root.
pub fn data_dir(data: &Option<PathBuf>) -> PathBuf {
    data.clone().unwrap_or_else(|| crate::project_root().join("data").join("mnist"))
}

/// A rayon pool of `threads` threads (all cores when `None`).
pub fn pool(threads: Option<usize>) -> anyhow::Result<rayon::ThreadPool> {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok(rayon::ThreadPoolBuilder::new().num_threads(n).build()?)
}

/// Runs `cargo xtask train`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.epochs == 0 {
        bail!("--epochs 0: expected at least 1 epoch (use --max-batches for less than one)");
    }
    let dir = data_dir(&args.data);
    let data = mnist_io::Mnist::open(&dir)
        .and_then(mnist_io::Mnist::into_resident)
        .with_context(|| format!("opening the dataset in {}", dir.display()))?;
    let (rows, cols) = data.train.image_dims();
    let classes = data.train.num_classes().max(data.test.num_classes());
    let init = parse_init(&args.init)?;
    let mut model =
        Model::from_spec(&args.model, [1, rows, cols], classes, init, args.seed).with_context(|| {
            format!(
                "--model {}: cannot build it for the 1×{rows}×{cols} images of --data {}",
                args.model,
                dir.display()
            )
        })?;
    let cfg = TrainConfig {
        epochs: args.epochs,
        max_batches: args.max_batches,
        batch: args.batch,
        lr: args.lr,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        nesterov: args.nesterov,
        schedule: parse_schedule(&args.schedule)?,
        seed: args.seed,
        progress: !args.json,
    };
    let pool = pool(args.threads)?;
    let threads = pool.current_num_threads();
    let indices: Vec<u32> = if args.validation == 0 {
        (0..data.train.len() as u32).collect()
    } else if args.validation >= data.train.len() {
        bail!(
            "--validation {}: expected fewer than the {} training images of --data {}",
            args.validation,
            data.train.len(),
            dir.display()
        );
    } else {
        mnist_io::split(data.train.len(), args.validation, args.seed).train
    };
    println!(
        "model {} ({} params, {} MACs/image), {} training images, {threads} threads",
        model.spec(),
        model.param_count(),
        model.macs(),
        indices.len()
    );
    let report = pool.install(|| {
        net::train(&mut model, &data.train, &indices, Some(&data.test), &cfg, &mut PrintEpochs)
    })?;
    let last = report.epochs.last().context("no epoch was trained")?;
    let test = last.test.as_ref().context("no test evaluation")?;
    if let Some(out) = &args.out {
        let mut meta = BTreeMap::from([
            ("epochs".to_string(), report.epochs.len().to_string()),
            ("lr".to_string(), args.lr.to_string()),
            ("momentum".to_string(), args.momentum.to_string()),
            ("batch".to_string(), args.batch.to_string()),
            ("seed".to_string(), args.seed.to_string()),
            ("test_accuracy".to_string(), test.accuracy.to_string()),
            ("validation".to_string(), args.validation.to_string()),
        ]);
        if args.validation > 0 {
            // What `prune` and `inspect` read to find the held-out images again.
            meta.insert("split_seed".to_string(), args.seed.to_string());
        }
        net::save(&model, out, &meta)?;
        println!("saved {}", out.display());
    }
    if args.json {
        let seconds: Vec<f64> = report.epochs.iter().map(|e| e.seconds).collect();
        let total_seconds: f64 = seconds.iter().sum();
        let total_images: f64 = report.epochs.iter().map(|e| e.images_per_second * e.seconds).sum::<f64>();
        let json = serde_json::json!({
            "model": model.spec(),
            "threads": threads,
            "epochs": report.epochs.len(),
            "batches": report.batches,
            "test_accuracy": test.accuracy,
            "test_loss": test.loss,
            "test_accuracy_per_epoch": report.epochs.iter().map(|e| e.test.as_ref().map(|t| t.accuracy)).collect::<Vec<_>>(),
            "train_loss": report.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>(),
            "epoch_seconds": seconds,
            "images_per_second": total_images / total_seconds.max(1e-9),
            "inference_seconds": test.seconds,
            "inference_images_per_second": test.images_per_second,
            "params": model.param_count(),
            "macs": model.macs(),
            "out": args.out,
        });
        println!("{json}");
    }
    Ok(())
}

/// Prints one line per epoch.
struct PrintEpochs;

impl net::TrainObserver for PrintEpochs {
    fn on_epoch_end(&mut self, _model: &Model, s: &net::EpochStats) {
        let (acc, loss) = s.test.as_ref().map_or((f64::NAN, f64::NAN), |t| (t.accuracy, t.loss));
        println!(
            "epoch {:>3}  lr {:.4}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%  {:.2} s  {:.0} img/s",
            s.epoch,
            s.lr,
            s.train_loss,
            100.0 * s.train_accuracy,
            loss,
            100.0 * acc,
            s.seconds,
            s.images_per_second
        );
    }
}
