//! `cargo xtask eval`: evaluates a saved model on the test set of an IDX dataset:
//! accuracy, mean loss, confusion matrix and images/s. With `--json` the last line is one
//! JSON object (`test_accuracy`, `test_loss`, `confusion`, `images_per_second`, …).

use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `cargo xtask eval`.
#[derive(clap::Args)]
pub struct Args {
    /// The model file (safetensors written by `cargo xtask train` or PyTorch with the same metadata).
    #[arg(long)]
    model_file: PathBuf,
    /// Folder with the four IDX files (default `data/mnist`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Inference batch size.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

/// Runs `cargo xtask eval`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let (model, meta) = net::load(&args.model_file)?;
    let dir = crate::train::data_dir(&args.data);
    let data =
        mnist_io::Mnist::open(&dir).with_context(|| format!("opening the dataset in {}", dir.display()))?;
    let pool = crate::train::pool(args.threads)?;
    let e = pool.install(|| net::evaluate(&model, &data.test, None, args.batch))?;
    let k = model.num_classes();
    println!("model {} ({} params, {} MACs/image)", model.spec(), model.param_count(), model.macs());
    println!(
        "test accuracy {:.2}%  loss {:.4}  {} images in {:.3} s ({:.0} images/s)",
        100.0 * e.accuracy,
        e.loss,
        e.images,
        e.seconds,
        e.images_per_second
    );
    println!("confusion (rows: true class, columns: predicted):");
    for row in e.confusion.chunks_exact(k) {
        println!("  {}", row.iter().map(|c| format!("{c:>5}")).collect::<String>());
    }
    if args.json {
        let json = serde_json::json!({
            "model": model.spec(),
            "metadata": meta,
            "test_accuracy": e.accuracy,
            "test_loss": e.loss,
            "confusion": e.confusion,
            "images": e.images,
            "seconds": e.seconds,
            "images_per_second": e.images_per_second,
            "params": model.param_count(),
            "macs": model.macs(),
        });
        println!("{json}");
    }
    Ok(())
}
