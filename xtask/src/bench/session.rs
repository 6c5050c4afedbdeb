//! `cargo xtask bench session`: one benchmark session, ours and the peers back to back,
//! every output kept in one folder beside a description of the machine.
//!
//! The README's speed tables come from such sessions: this machine is shared and
//! noisy, so a figure means something only beside its peers measured in the same
//! minutes, and next to the machine, commit and load it was taken with. The session
//! builds the benchmarks first (so that no compilation runs between measurements), then
//! runs `bench gemm`, `bench conv`, `bench train` (`--train-runs` times) and, given
//! `--peers`, the peer scripts: numpy/OpenBLAS on the GEMM shapes at 1 and 2 threads
//! (with `OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` removed, so that OpenBLAS picks its
//! own, fastest kernel) and PyTorch on LeNet-5 and the MLP at 1 and 2 threads. Each
//! output is written atomically, as soon as its run ends; last, `summary.md` tables ours
//! beside PyTorch (`bench summary` of this one folder).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::experiment::store::{Machine, git_commit, write_atomic};

/// Options of `cargo xtask bench session`.
#[derive(clap::Args, Debug, Clone)]
pub struct SessionArgs {
    /// Folder for this session's outputs (default: `results/bench/<UTC date-time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder of the peer scripts (`gemm_bench.py`, `train_bench.py`), such as
    /// `../shared/peers`; without it only our benchmarks run.
    #[arg(long)]
    pub peers: Option<PathBuf>,
    /// Python with torch, numpy and threadpoolctl, for the peer scripts.
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// Folder of the four MNIST files, for `bench train` and PyTorch.
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
    /// Runs of `bench train` (each a median of 3 epochs per model and thread count).
    #[arg(long, default_value_t = 2)]
    pub train_runs: usize,
    /// Epochs of each PyTorch run.
    #[arg(long, default_value_t = 3)]
    pub torch_epochs: usize,
}

/// One measurement of a session: a command and the file its output goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// File name inside the session folder.
    pub file: String,
    /// Program to run.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory, if not the workspace root.
    pub dir: Option<PathBuf>,
    /// Environment variables set for it.
    pub env: Vec<(String, String)>,
    /// Environment variables removed for it.
    pub env_remove: Vec<String>,
}

/// The steps of a session, in the order they run. `cargo` is the cargo to run the
/// benchmarks with; `data` the MNIST folder, already absolute.
pub fn plan(args: &SessionArgs, cargo: &Path, data: &Path) -> Vec<Step> {
    let data = data.display().to_string();
    let ours = |file: String, package: &str, bench: &str| Step {
        file,
        program: cargo.to_path_buf(),
        args: ["bench", "-p", package, "--bench", bench].map(String::from).to_vec(),
        dir: None,
        env: vec![("ACTPRUNE_MNIST_DIR".into(), data.clone())],
        env_remove: Vec::new(),
    };
    let mut steps =
        vec![ours("gemm.txt".into(), "kernels", "gemm"), ours("conv.txt".into(), "kernels", "conv")];
    steps.extend((1..=args.train_runs).map(|r| ours(format!("train-{r}.txt"), "net", "train")));
    if let Some(peers) = &args.peers {
        let peer = |file: String, script: &str, script_args: Vec<String>, threads: usize, blas: bool| Step {
            file,
            program: args.python.clone(),
            args: std::iter::once(script.to_string()).chain(script_args).collect(),
            dir: Some(peers.clone()),
            env: vec![("OMP_NUM_THREADS".into(), threads.to_string()), ("MNIST_DIR".into(), data.clone())],
            env_remove: if blas {
                vec!["OPENBLAS_CORETYPE".into(), "OPENBLAS_L2_SIZE".into()]
            } else {
                Vec::new()
            },
        };
        for t in [1, 2] {
            steps.push(peer(format!("openblas-{t}.txt"), "gemm_bench.py", vec![t.to_string()], t, true));
        }
        for model in ["lenet", "mlp_thesis"] {
            for t in [1, 2] {
                let script_args = vec![model.to_string(), t.to_string(), args.torch_epochs.to_string()];
                steps.push(peer(format!("torch-{model}-{t}.txt"), "train_bench.py", script_args, t, false));
            }
        }
    }
    steps
}

/// Runs a session: builds, describes the machine, runs every step of [`plan`].
pub fn run(args: &SessionArgs) -> anyhow::Result<()> {
    let root = crate::project_root();
    let absolute = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { root.join(p) };
    let data = absolute(&args.data);
    if !data.join("train-images-idx3-ubyte").is_file() {
        bail!(
            "{}: no MNIST here (train-images-idx3-ubyte); run `cargo xtask fetch-mnist` or pass --data",
            data.display()
        );
    }
    if let Some(peers) = &args.peers {
        for script in ["gemm_bench.py", "train_bench.py"] {
            if !peers.join(script).is_file() {
                bail!("--peers {}: no {script} there", peers.display());
            }
        }
    }
    let out = match &args.out {
        Some(out) => absolute(out),
        None => root.join("results/bench").join(utc_stamp(now_seconds())),
    };
    let cargo = PathBuf::from(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));

    println!("bench session: building the benchmarks");
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["bench", "-p", "kernels", "-p", "net", "--no-run"])
        .status()
        .context("could not start cargo bench --no-run")?;
    if !status.success() {
        bail!("building the benchmarks failed ({status})");
    }

    let mut machine = describe_machine(&root);
    write_atomic(&out.join("machine.txt"), machine.as_bytes())?;
    let steps = plan(args, &cargo, &data);
    let bar = ProgressBar::new(steps.len() as u64)
        .with_style(ProgressStyle::with_template("{pos}/{len} [{bar:30}] {elapsed} {msg}")?);
    for step in &steps {
        bar.set_message(step.file.clone());
        let mut cmd = Command::new(&step.program);
        cmd.current_dir(step.dir.as_deref().unwrap_or(&root)).args(&step.args);
        for (k, v) in &step.env {
            cmd.env(k, v);
        }
        for k in &step.env_remove {
            cmd.env_remove(k);
        }
        let output = cmd.output().with_context(|| format!("could not start {}", step.program.display()))?;
        let mut text = output.stdout;
        text.extend_from_slice(&output.stderr);
        write_atomic(&out.join(&step.file), &text)?;
        if !output.status.success() {
            bar.abandon();
            bail!(
                "{} failed ({}); its output is in {}",
                step.file,
                output.status,
                out.join(&step.file).display()
            );
        }
        bar.inc(1);
    }
    bar.finish_with_message("done");
    machine.push_str(&format!("end: {} UTC, load average {}\n", utc_stamp(now_seconds()), load_average()));
    write_atomic(&out.join("machine.txt"), machine.as_bytes())?;
    let summary = super::summary::render(&[super::summary::read_session(&out)?]);
    write_atomic(&out.join("summary.md"), summary.as_bytes())?;
    print!("{summary}");
    println!("bench session: {} outputs and summary.md in {}", steps.len(), out.display());
    Ok(())
}

/// Commit, time, CPU, caches and load: what a figure needs beside it (the commit and
/// CPU as an experiment's run records them, then the details a speed figure needs).
fn describe_machine(root: &Path) -> String {
    let machine = Machine::detect();
    let mut s = format!(
        "commit: {}\nstart: {} UTC\ncpu: {} ({} logical cores, {})\n",
        git_commit(root),
        utc_stamp(now_seconds()),
        machine.cpu,
        machine.cores,
        machine.os
    );
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    for key in ["vendor_id", "cpu family", "model", "flags"] {
        if let Some(line) = cpuinfo.lines().find(|l| l.split(':').next().is_some_and(|k| k.trim() == key)) {
            let value = line.split_once(':').map_or("", |(_, v)| v.trim());
            let value = if key == "flags" {
                value.split(' ').filter(|f| f.starts_with("avx") || *f == "fma").collect::<Vec<_>>().join(" ")
            } else {
                value.to_string()
            };
            s.push_str(&format!("{key}: {value}\n"));
        }
    }
    for index in 0..8 {
        let dir = PathBuf::from(format!("/sys/devices/system/cpu/cpu0/cache/index{index}"));
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).map(|v| v.trim().to_string());
        let (Ok(level), Ok(kind), Ok(size)) = (read("level"), read("type"), read("size")) else { break };
        let ways = read("ways_of_associativity").unwrap_or_default();
        s.push_str(&format!("cache: L{level} {kind} {size} {ways}-way\n"));
    }
    s.push_str(&format!("load average at start: {}\n", load_average()));
    s
}

/// The 1-minute load average, or `?`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `YYYYMMDD-HHMM` in UTC for `secs` since the Unix epoch (the civil-from-days
/// conversion of the proleptic Gregorian calendar).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (hour, minute) = (secs % 86_400 / 3600, secs % 3600 / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{hour:02}{minute:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(peers: Option<&str>) -> SessionArgs {
        SessionArgs {
            out: None,
            peers: peers.map(PathBuf::from),
            python: PathBuf::from("/venv/bin/python"),
            data: PathBuf::from("data/mnist"),
            train_runs: 3,
            torch_epochs: 2,
        }
    }

    #[test]
    fn utc_stamps_are_civil_dates() {
        assert_eq!(utc_stamp(0), "19700101-0000");
        // 2000-02-29 23:59 (a leap day of a century leap year).
        assert_eq!(utc_stamp(951_868_740), "20000229-2359");
        // 2026-12-07 22:09:52.
        assert_eq!(utc_stamp(1_796_681_392), "20261207-2209");
    }

    #[test]
    fn without_peers_a_session_runs_only_ours() {
        let steps = plan(&args(None), Path::new("cargo"), Path::new("/d"));
        let files: Vec<&str> = steps.iter().map(|s| s.file.as_str()).collect();
        assert_eq!(files, ["gemm.txt", "conv.txt", "train-1.txt", "train-2.txt", "train-3.txt"]);
        assert_eq!(steps[4].args, ["bench", "-p", "net", "--bench", "train"]);
        assert!(steps.iter().all(|s| s.env.contains(&("ACTPRUNE_MNIST_DIR".into(), "/d".into()))));
    }

    #[test]
    fn peers_run_at_each_thread_count_with_their_own_blas_kernel() {
        let steps = plan(&args(Some("/peers")), Path::new("cargo"), Path::new("/d"));
        let files: Vec<&str> = steps.iter().map(|s| s.file.as_str()).collect();
        assert_eq!(
            &files[5..],
            [
                "openblas-1.txt",
                "openblas-2.txt",
                "torch-lenet-1.txt",
                "torch-lenet-2.txt",
                "torch-mlp_thesis-1.txt",
                "torch-mlp_thesis-2.txt"
            ]
        );
        let blas = &steps[6];
        assert_eq!(blas.args, ["gemm_bench.py", "2"]);
        assert_eq!(blas.program, PathBuf::from("/venv/bin/python"));
        assert_eq!(blas.dir.as_deref(), Some(Path::new("/peers")));
        assert!(blas.env.contains(&("OMP_NUM_THREADS".into(), "2".into())));
        assert_eq!(blas.env_remove, ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"]);
        let torch = &steps[10];
        assert_eq!(torch.args, ["train_bench.py", "mlp_thesis", "2", "2"]);
        assert!(torch.env.contains(&("MNIST_DIR".into(), "/d".into())));
        assert!(torch.env_remove.is_empty());
    }
}
