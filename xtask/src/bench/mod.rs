//! `cargo xtask bench <what>`: run one of the project's benchmarks in release mode.
//!
//! Each benchmark is a `harness = false` bench target of the crate it measures; this
//! command only names them and forwards the options, so that `cargo xtask bench gemm
//! --json` and `cargo bench -p kernels --bench gemm -- --json` are the same run.
//! `cargo xtask bench session` runs them all with the peers beside them (`session`), and
//! `cargo xtask bench summary` tables ours beside PyTorch from such sessions (`summary`).

use std::process::Command;

use anyhow::{Context, bail};

mod session;
mod summary;

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Which benchmark to run.
    #[command(subcommand)]
    pub what: What,
}

/// The benchmarks.
#[derive(clap::Subcommand)]
pub enum What {
    /// GFLOP/s of `kernels::gemm` beside the `gemm` and `matrixmultiply` crates, for 1
    /// and 2 threads, over the square, MLP and LeNet-as-im2col shapes, and as a fraction
    /// of the machine's FMA ceiling (measured first, registers only).
    Gemm(GemmArgs),
    /// GFLOP/s of LeNet's convolutions (conv1, conv2 at batch 64, forward and backward)
    /// on `kernels::conv`'s automatic and im2col paths beside im2col + the `gemm` crate,
    /// and the automatic path as a fraction of the machine's FMA ceiling.
    Conv(ConvArgs),
    /// Seconds per training epoch, images/s, inference time of the 10,000 test images
    /// and the fraction of the measured GEMM peak, for LeNet-5 and MLP-600 at 1 and 2
    /// threads, on the real MNIST (`ACTPRUNE_MNIST_DIR` or `data/mnist`).
    Train(TrainArgs),
    /// A whole session: `gemm`, `conv` and `train` (repeated), then with `--peers` the
    /// numpy/OpenBLAS and PyTorch scripts, back to back; every output and a description
    /// of the machine go into one folder (default `results/bench/<UTC date-time>`).
    Session(session::SessionArgs),
    /// Ours beside PyTorch from one or more session folders: per session, the medians of
    /// the training epochs and inference times and their ratios; over several, the
    /// pooled medians and each ratio's range over the sessions; then the GEMM and
    /// convolution tables beside their peers (markdown).
    Summary(summary::SummaryArgs),
}

/// Options of `cargo xtask bench train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// 200 batches per run, scaled to an epoch, one run (a quick look, noisier).
    #[arg(long)]
    pub quick: bool,
    /// Also time each layer's kernels over training steps (forward, and backward with
    /// the fused SGD step): microseconds per step and GFLOP/s per layer, and how much of
    /// a Linear's backward its input gradient took.
    #[arg(long)]
    pub layers: bool,
    /// Only these models (`lenet5`, `mlp`); repeatable.
    #[arg(long)]
    pub model: Vec<String>,
    /// Only these thread counts (default 1 and 2); repeatable.
    #[arg(long)]
    pub threads: Vec<usize>,
}

/// Options that `cargo xtask bench gemm` and `bench conv` share.
#[derive(clap::Args)]
pub struct KernelBenchArgs {
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Fewer and shorter samples (a quick look, noisier).
    #[arg(long)]
    pub quick: bool,
    /// Time one-thread runs by the thread's CPU time instead of wall time (steadier on a
    /// busy machine; for tuning).
    #[arg(long)]
    pub cpu_time: bool,
    /// Only these thread counts (default 1 and 2); repeatable.
    #[arg(long)]
    pub threads: Vec<usize>,
}

impl KernelBenchArgs {
    /// The bench binary's arguments: these options, with `(flag, values)` before the
    /// thread counts.
    fn forwarded(&self, only: (&str, &[String])) -> Vec<String> {
        let switches = [("--json", self.json), ("--quick", self.quick), ("--cpu-time", self.cpu_time)];
        let threads = self.threads.iter().map(usize::to_string).collect();
        forwarded(&switches, &[(only.0, only.1.to_vec()), ("--threads", threads)])
    }
}

/// Options of `cargo xtask bench conv`.
#[derive(clap::Args)]
pub struct ConvArgs {
    #[command(flatten)]
    pub common: KernelBenchArgs,
    /// Only these cases (`conv1_fwd`, `conv1_fwd_pool`, `conv1_bwd`, `conv2_fwd`,
    /// `conv2_fwd_pool`, `conv2_bwd`); repeatable.
    #[arg(long)]
    pub case: Vec<String>,
}

/// Options of `cargo xtask bench gemm`.
#[derive(clap::Args)]
pub struct GemmArgs {
    #[command(flatten)]
    pub common: KernelBenchArgs,
    /// Only these shapes (e.g. `sq1024`, `mlp784`, `conv1`); repeatable.
    #[arg(long)]
    pub shape: Vec<String>,
}

/// Runs the chosen benchmark.
pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.what {
        What::Gemm(g) => cargo_bench("kernels", "gemm", &g.common.forwarded(("--shape", &g.shape))),
        What::Conv(c) => cargo_bench("kernels", "conv", &c.common.forwarded(("--case", &c.case))),
        What::Train(t) => {
            let switches = [("--json", t.json), ("--quick", t.quick), ("--layers", t.layers)];
            let threads = t.threads.iter().map(usize::to_string).collect();
            cargo_bench(
                "net",
                "train",
                &forwarded(&switches, &[("--model", t.model.clone()), ("--threads", threads)]),
            )
        }
        What::Session(s) => session::run(s),
        What::Summary(s) => summary::run(s),
    }
}

/// The bench binary's arguments: each switch that is on, then `flag value` for every
/// value of each repeatable option, in the order given.
fn forwarded(switches: &[(&str, bool)], repeated: &[(&str, Vec<String>)]) -> Vec<String> {
    let mut out: Vec<String> = switches.iter().filter(|(_, on)| *on).map(|(f, _)| f.to_string()).collect();
    for (flag, values) in repeated {
        for v in values {
            out.extend([flag.to_string(), v.clone()]);
        }
    }
    out
}

/// `cargo bench -p <package> --bench <bench> -- <args>` from the workspace root.
fn cargo_bench(package: &str, bench: &str, args: &[String]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(crate::project_root())
        .args(["bench", "-p", package, "--bench", bench, "--"])
        .args(args)
        .status()
        .with_context(|| format!("could not start cargo bench for {package}/{bench}"))?;
    if !status.success() {
        bail!("benchmark {package}/{bench} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::forwarded;

    #[test]
    fn forwards_switches_that_are_on_then_each_repeated_value() {
        let args = forwarded(
            &[("--json", false), ("--quick", true), ("--cpu-time", true)],
            &[("--case", vec!["conv1_fwd".into(), "conv2_bwd".into()]), ("--threads", vec!["2".into()])],
        );
        assert_eq!(
            args,
            ["--quick", "--cpu-time", "--case", "conv1_fwd", "--case", "conv2_bwd", "--threads", "2"]
        );
    }
}
