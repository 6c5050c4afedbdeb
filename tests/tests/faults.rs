//! Faults: `kill -9` at seeded random points of `train --out`, `prune --out`,
//! `experiment thesis --quick` and `fetch-mnist --from`, then a rerun; and a full disk
//! (a tiny tmpfs) under `train --out`. No half-written file may ever be read, finished
//! work must be kept, the rerun must complete, and a failed write must leave the
//! previous good file in place.
//!
//! These drive the xtask binary (built once with `cargo build -p xtask --release`,
//! honouring `CARGO_TARGET_DIR`) on synthetic IDX data, so they run in CI without MNIST;
//! the `fetch-mnist` test needs the offline MNIST mirror and is `#[ignore]`d.

mod synthetic;
mod xtask_bin;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::time::{Duration, Instant};
use xtask_bin::xtask;

fn run(args: &[&str]) -> Output {
    Command::new(xtask()).args(args).stdin(Stdio::null()).output().expect("cannot start xtask")
}

fn run_ok(args: &[&str]) -> Duration {
    // Build (or find) the binary before the clock starts: the kill points scale with this time.
    xtask();
    let t = Instant::now();
    let out = run(args);
    assert!(out.status.success(), "xtask {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    t.elapsed()
}

/// Starts xtask and sends it SIGKILL after `after` unless it finished first.
/// Returns whether it was killed.
fn kill_after(args: &[&str], after: Duration) -> bool {
    let mut child = Command::new(xtask())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start xtask");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("waitable child").is_some() {
            return false;
        }
        if start.elapsed() >= after {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped child");
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Seeded kill points: `n` delays spread over `[0, 1.2 · full)`, in a seeded order.
fn kill_points(full: Duration, n: usize, seed: u64) -> Vec<Duration> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Stratified: one point in each of n slices, placed at random inside it.
            let u = (i as f64 + (state >> 11) as f64 / (1u64 << 53) as f64) / n as f64;
            full.mul_f64(1.2 * u)
        })
        .collect()
}

/// A model file must be either absent or complete: loadable, with every tensor.
fn assert_complete_model(path: &Path, what: &str) {
    if path.exists()
        && let Err(e) = net::load(path)
    {
        panic!("{what}: {} is half-written: {e}", path.display());
    }
}

/// Borrowed arguments for [`run`].
fn argv(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary paths")
}

#[test]
fn train_out_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic::write_mnist(&dir.path().join("data"), 1200, 200, 28, 28);
    let out = dir.path().join("lenet.safetensors");
    let args = |seed: &str| {
        [
            "train",
            "--model",
            "lenet5",
            "--epochs",
            "1",
            "--batch",
            "32",
            "--threads",
            "1",
            "--seed",
            seed,
            "--json",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain(["--data".into(), s(&data).into(), "--out".into(), s(&out).into()])
        .collect::<Vec<String>>()
    };
    let first = args("0");
    let full = run_ok(&argv(&first));
    let good = std::fs::read(&out).unwrap();
    let mut killed = 0;
    for (i, at) in kill_points(full, 8, 1).into_iter().enumerate() {
        let a = args(&(i + 1).to_string());
        killed += usize::from(kill_after(&argv(&a), at));
        // The previous good file or a complete new one, never a torn one.
        assert_complete_model(&out, &format!("train killed after {at:?}"));
        assert!(out.exists(), "the previous model file vanished");
    }
    assert!(killed >= 1, "none of the 8 runs was killed: the kill points are too late");
    run_ok(&argv(&args("99")));
    assert_complete_model(&out, "rerun");
    assert_ne!(std::fs::read(&out).unwrap(), good, "the rerun (another seed) did not replace the file");
}

#[test]
fn prune_out_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic::write_mnist(&dir.path().join("data"), 1200, 200, 28, 28);
    let model = dir.path().join("mlp.safetensors");
    run_ok(&[
        "train",
        "--model",
        "mlp:784-64-64-10",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--json",
        "--data",
        s(&data),
        "--out",
        s(&model),
    ]);
    let out = dir.path().join("pruned.safetensors");
    let args = [
        "prune",
        "--model-file",
        s(&model),
        "--data",
        s(&data),
        "--criterion",
        "entropy",
        "--ratio",
        "0.5",
        "--epochs",
        "2",
        "--validation",
        "200",
        "--json",
        "--out",
        s(&out),
    ];
    let full = run_ok(&args);
    assert_complete_model(&out, "first prune");
    let mut killed = 0;
    for at in kill_points(full, 8, 2) {
        killed += usize::from(kill_after(&args, at));
        assert_complete_model(&out, &format!("prune killed after {at:?}"));
        assert_complete_model(&model, "the input model");
    }
    assert!(killed >= 1, "none of the 8 runs was killed: the kill points are too late");
    std::fs::remove_file(&out).unwrap();
    run_ok(&args);
    let (pruned, _) = net::load(&out).unwrap();
    assert!(pruned.param_count() < net::load(&model).unwrap().0.param_count());
}

/// The lines of every `runs.jsonl` under `dir`, each checked to be whole JSON.
fn runs(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "runs.jsonl") {
                let text = std::fs::read_to_string(&p).unwrap();
                // A torn last line (no newline) may be left by a kill; the store ignores it.
                let complete = if text.ends_with('\n') {
                    &text[..]
                } else {
                    &text[..text.rfind('\n').map_or(0, |i| i + 1)]
                };
                for line in complete.lines() {
                    assert!(
                        serde_json::from_str::<serde_json::Value>(line).is_ok(),
                        "a whole line of {} is not JSON: {line}",
                        p.display()
                    );
                    lines.push(line.to_string());
                }
            }
        }
    }
    lines
}

fn run_id(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].as_str().unwrap().to_string()
}

#[test]
fn experiment_sweep_survives_kill_9_and_keeps_finished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic::write_mnist(&dir.path().join("data"), 1500, 300, 28, 28);
    let reference = dir.path().join("reference");
    let base = ["experiment", "thesis", "--quick", "--threads", "1", "--data", s(&data)];
    let with_out = |out: &Path| {
        let mut a: Vec<String> = base.iter().map(|x| x.to_string()).collect();
        a.extend(["--out".to_string(), s(out).to_string()]);
        a
    };
    let full = run_ok(&argv(&with_out(&reference)));
    let mut expected: Vec<String> = runs(&reference).iter().map(|l| run_id(l)).collect();
    expected.sort();
    assert!(expected.len() >= 2, "the quick sweep has {} runs", expected.len());

    let out = dir.path().join("killed");
    let mut killed = 0;
    let mut kept_before: Vec<String> = Vec::new();
    for at in kill_points(full, 6, 3).into_iter().map(|d| d / 2) {
        killed += usize::from(kill_after(&argv(&with_out(&out)), at));
        let now = runs(&out);
        // Finished work is kept: every run recorded before this kill is still there, unchanged.
        for line in &kept_before {
            assert!(now.contains(line), "a finished run was lost or rewritten: {line}");
        }
        let mut ids: Vec<String> = now.iter().map(|l| run_id(l)).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "a run was recorded twice");
        kept_before = now;
    }
    // Each rerun resumes the sweep, so later ones finish sooner than the first full run.
    assert!(killed >= 1, "none of the 6 sweeps was killed");
    run_ok(&argv(&with_out(&out)));
    let mut ids: Vec<String> = runs(&out).iter().map(|l| run_id(l)).collect();
    ids.sort();
    assert_eq!(ids, expected, "the rerun did not complete exactly the sweep's runs");
    // Every model file the sweep kept is whole.
    let mut stack = vec![out.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "safetensors") {
                assert_complete_model(&p, "experiment model");
            }
        }
    }
}

fn mirror() -> PathBuf {
    std::env::var_os("MNIST_MIRROR").map(PathBuf::from).unwrap_or_else(|| {
        actprune_tests::project_root().join("..").join("shared").join("data").join("mnist")
    })
}

#[test]
#[ignore = "needs MNIST: run with cargo xtask test"]
fn fetch_mnist_survives_kill_9() {
    let from = mirror();
    assert!(from.is_dir(), "no offline MNIST mirror at {} (set MNIST_MIRROR)", from.display());
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    let full = run_ok(&["fetch-mnist", "--from", s(&from), "--dir", s(&reference)]);
    let names =
        [mnist_io::TRAIN_IMAGES, mnist_io::TRAIN_LABELS, mnist_io::TEST_IMAGES, mnist_io::TEST_LABELS];
    let good: Vec<Vec<u8>> = names.iter().map(|n| std::fs::read(reference.join(n)).unwrap()).collect();
    let dest = dir.path().join("dest");
    let mut killed = 0;
    for at in kill_points(full, 6, 4) {
        killed += usize::from(kill_after(&["fetch-mnist", "--from", s(&from), "--dir", s(&dest)], at));
        // A file under its final name is complete; partial work stays under other names.
        for (n, bytes) in names.iter().zip(&good) {
            let p = dest.join(n);
            if p.exists() {
                assert!(std::fs::read(&p).unwrap() == *bytes, "{n} is half-written after a kill at {at:?}");
            }
        }
    }
    assert!(killed >= 1, "none of the 6 fetches was killed");
    run_ok(&["fetch-mnist", "--from", s(&from), "--dir", s(&dest)]);
    for (n, bytes) in names.iter().zip(&good) {
        assert!(std::fs::read(dest.join(n)).unwrap() == *bytes, "{n} differs after the rerun");
    }
    assert_eq!(mnist_io::Mnist::open(&dest).unwrap().train.len(), 60_000);
}

/// A tmpfs mounted for the test and unmounted when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_gives_a_clear_error_and_keeps_the_previous_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic::write_mnist(&dir.path().join("data"), 300, 50, 28, 28);
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=96k", "tmpfs"]).arg(&disk).status();
    assert!(mounted.is_ok_and(|s| s.success()), "cannot mount a 96 KiB tmpfs at {}", disk.display());
    let _guard = Tmpfs(disk.clone());
    let out = disk.join("model.safetensors");
    // A small MLP (51 KB) fits; LeNet-5 (247 KB) does not.
    run_ok(&xtask_bin::train_tiny_mlp_args(s(&data), s(&out)));
    let good = std::fs::read(&out).unwrap();
    let failed =
        run(&["train", "--model", "lenet5", "--epochs", "1", "--json", "--data", s(&data), "--out", s(&out)]);
    assert!(!failed.status.success(), "writing 247 KB into a 96 KiB disk succeeded");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("No space left on device") && stderr.contains(s(&out)),
        "the error does not say the disk is full and where: {stderr}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), good, "the previous good model file was damaged");
    let leftovers: Vec<_> = std::fs::read_dir(&disk).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary files left on the full disk: {leftovers:?}");
}
