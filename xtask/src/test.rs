//! `cargo xtask test`: fetch MNIST when it is missing, then run the whole suite in
//! release mode, the tests that need the real data (`#[ignore]`d for a plain
//! `cargo test`) included, and the kernel tests once more for each SIMD path the
//! machine can run, so that the AVX2 and portable paths are tested too.

use std::process::Command;

use anyhow::{Context, bail};

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct Args {
    /// Skip the extra kernel builds for the AVX2 and portable SIMD paths.
    #[arg(long)]
    pub native_only: bool,
    /// Extra arguments passed to the test binaries (e.g. a test name filter).
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

/// The SIMD path a native build (`-C target-cpu=native`) compiles for on this machine.
fn native_simd() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "avx2";
        }
    }
    "portable"
}

fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(crate::project_root()).args(args);
    cmd
}

fn run_checked(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    eprintln!("==> {what}");
    let status = cmd.status().with_context(|| format!("could not start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs the suite.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let data = crate::project_root().join("data").join("mnist");
    crate::fetch_mnist::ensure(&data).context("MNIST is needed by the data tests")?;

    let mut cmd = cargo(&["test", "--workspace", "--release", "--", "--include-ignored"]);
    cmd.args(&args.test_args).env("ACTPRUNE_EXPECT_SIMD", native_simd()).env("ACTPRUNE_MNIST_DIR", &data);
    run_checked(cmd, "workspace tests (release, including data tests)")?;

    if !args.native_only {
        #[cfg(target_arch = "x86_64")]
        let extra: &[(&str, &str)] = &[("x86-64-v3", "avx2"), ("x86-64", "portable")];
        #[cfg(not(target_arch = "x86_64"))]
        let extra: &[(&str, &str)] = &[];
        for (cpu, path) in extra {
            if *path == "avx2" && native_simd() == "portable" {
                continue;
            }
            let target = crate::project_root().join("target").join(format!("simd-{path}"));
            let mut cmd = cargo(&["test", "--release", "-p", "kernels", "--"]);
            cmd.args(&args.test_args)
                .env("RUSTFLAGS", format!("-C target-cpu={cpu}"))
                .env("CARGO_TARGET_DIR", target)
                .env("ACTPRUNE_EXPECT_SIMD", path);
            run_checked(cmd, &format!("kernel tests on the {path} path (-C target-cpu={cpu})"))?;
        }
    }
    Ok(())
}
