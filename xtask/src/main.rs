//! actprune's command line, in the cargo-xtask pattern: `cargo xtask <command>`.
//!
//! One module per command. This binary is the only place (with `tests/`) that uses
//! `anyhow`; the library crates return their own typed errors.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod bench;
mod eval;
mod experiment;
mod fetch_mnist;
mod fuzz;
mod inspect;
mod prune;
mod test;
mod tidy;
mod train;

/// actprune: train small CNNs and MLPs on the CPU and prune them by the activation
/// status of their neurons.
#[derive(Parser)]
#[command(name = "cargo xtask", arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download (or copy from an offline mirror) and verify the four MNIST files.
    FetchMnist(fetch_mnist::Args),
    /// Run the cargo-fuzz targets (idx, model_file, spec, plan) for N seconds each; needs
    /// `cargo install cargo-fuzz`.
    Fuzz(fuzz::Args),
    /// Fetch MNIST if missing, then run the whole test suite (including the tests that
    /// need the real data) and the portable-SIMD kernel tests.
    Test(test::Args),
    /// Run a benchmark in release mode: `gemm` (GFLOP/s beside the `gemm` and
    /// `matrixmultiply` crates, 1 and 2 threads; `--json` for one object per line).
    Bench(bench::Args),
    /// Prune a trained model by a criterion and schedule, retrain, and report before/after.
    Prune(prune::Args),
    /// Per hidden layer of a model: neurons, dead, always-on, firing rate, decision entropy.
    Inspect(inspect::Args),
    /// Run a named experiment (thesis, criteria, pretrain, width-search, all) or merge
    /// shards; with no name, list the recipes.
    Experiment(experiment::Args),
    /// Train a model from a spec on MNIST (or any IDX folder) and save it as safetensors.
    Train(train::Args),
    /// Evaluate a saved model on the test set: accuracy, loss, confusion matrix, images/s.
    Eval(eval::Args),
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole chain of causes on one line. The `{:?}` that
            // `main() -> Result` uses would add a backtrace whenever RUST_BACKTRACE is set,
            // burying the message that names the file, field and expected value.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::FetchMnist(args) => fetch_mnist::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Prune(args) => prune::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Experiment(args) => experiment::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => eval::run(&args),
    }
}

/// The workspace root (the parent of this crate's directory).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
