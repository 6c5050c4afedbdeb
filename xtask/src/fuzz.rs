//! `cargo xtask fuzz [TARGET] [--seconds N]`: runs the cargo-fuzz (libFuzzer) targets
//! of `fuzz/` one after the other, each for N seconds, on this stable toolchain.
//!
//! cargo-fuzz wants a nightly compiler for its sanitizer flags; `RUSTC_BOOTSTRAP=1`
//! lets the stable compiler accept them (`--sanitizer none` avoids them altogether).
//! New inputs go to a work corpus under the target folder, so the committed seed
//! corpus (`fuzz/corpus/<target>/`) and the crash regressions
//! (`fuzz/regressions/<target>/`) are only read; crashes land in
//! `fuzz/artifacts/<target>/` and belong, once fixed, in `fuzz/regressions/<target>/`,
//! which `tests/tests/fuzz_regressions.rs` replays under `cargo test`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// The fuzz targets, in the order they run (names of `fuzz/fuzz_targets/*.rs`).
pub const TARGETS: [&str; 4] = ["idx", "model_file", "spec", "plan"];

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct Args {
    /// One target (idx, model_file, spec, plan); all of them when omitted.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub target: Option<String>,
    /// Seconds per target, at least 1.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// Sanitizer: address (default, catches out-of-bounds reads in unsafe code) or none.
    #[arg(long, default_value = "address", value_parser = ["address", "none"])]
    pub sanitizer: String,
    /// Largest allocation one input may make, in MB (libFuzzer's -malloc_limit_mb):
    /// an allocation sized by a hostile header instead of the input fails the run.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub malloc_limit_mb: u64,
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs `cargo xtask fuzz`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let installed = cargo().args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !installed {
        bail!(
            "cargo-fuzz is not installed: install it with `cargo install cargo-fuzz` (it works on stable here)"
        );
    }
    let fuzz_dir = crate::project_root().join("fuzz");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("target"));
    let targets: Vec<&str> = match &args.target {
        Some(t) => vec![t.as_str()],
        None => TARGETS.to_vec(),
    };
    for target in targets {
        let work = target_dir.join("fuzz-corpus").join(target);
        let artifacts = fuzz_dir.join("artifacts").join(target);
        for dir in [&work, &artifacts] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        eprintln!("==> fuzzing `{target}` for {} s (new inputs in {})", args.seconds, work.display());
        let status = cargo()
            .current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "-O", "--sanitizer", &args.sanitizer, target])
            .arg(&work)
            .arg(fuzz_dir.join("corpus").join(target))
            .arg(fuzz_dir.join("regressions").join(target))
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg(format!("-malloc_limit_mb={}", args.malloc_limit_mb))
            .arg("-rss_limit_mb=2048")
            .arg("-timeout=10")
            .arg("-print_final_stats=1")
            .status()
            .context("could not start cargo fuzz")?;
        if !status.success() {
            bail!(
                "fuzz target `{target}` failed ({status}); the input is in {}: fix the bug, then move the \
                 input to fuzz/regressions/{target}/",
                artifacts.display()
            );
        }
    }
    Ok(())
}
