//! End-to-end tests of `cargo xtask experiment`: the `thesis --quick` sweep on the real
//! MNIST produces complete, sensible results and plots; a sweep killed mid-run resumes
//! without repeating a finished run. Both run the real xtask binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Builds the xtask binary (release, as `cargo xtask` runs it) and returns its path.
fn xtask() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(actprune_tests::project_root())
        .args(["build", "-p", "xtask", "--release", "--message-format=json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "building xtask failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"]["name"] == "xtask")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the xtask executable")
}

fn experiment(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(xtask());
    cmd.args(["experiment", "thesis", "--quick", "--threads", "2", "--data"])
        .arg(actprune_tests::mnist_dir())
        .arg("--out")
        .arg(out)
        .args(extra);
    cmd
}

/// The one sweep directory under `out/thesis/`.
fn sweep_dir(out: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(out.join("thesis"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(String::from).collect()
}

#[test]
#[ignore = "needs MNIST: run with cargo xtask test"]
fn thesis_quick_produces_runs_summary_report_and_plots() {
    let out = tempfile::tempdir().unwrap();
    let st = experiment(out.path(), &[]).status().unwrap();
    assert!(st.success());
    let dir = sweep_dir(out.path());

    let runs: Vec<Value> =
        lines(&dir.join("runs.jsonl")).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let widths = [100u64, 400, 700, 1000];
    assert_eq!(runs.len(), widths.len());
    for w in widths {
        let r = runs
            .iter()
            .find(|r| r["config"]["hidden"][0] == w)
            .unwrap_or_else(|| panic!("width {w} missing"));
        assert_eq!(r["config"]["model"], format!("mlp:784-{w}-{w}-10"));
        for key in ["trained_accuracy", "test_accuracy"] {
            let a = r["metrics"][key].as_f64().unwrap();
            // Two epochs over 10,000 images at lr 0.01: far above chance (0.1), not perfect.
            assert!((0.5..1.0).contains(&a), "width {w}: {key} = {a}");
        }
        let after: Vec<u64> =
            r["metrics"]["hidden_after"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(after.len(), 2);
        assert!(after.iter().all(|&a| (1..=w).contains(&a)), "{after:?}");
        assert!(
            r["metrics"]["macs_after"].as_u64().unwrap() <= r["metrics"]["macs_before"].as_u64().unwrap()
        );
        let hist = r["metrics"]["firing_histograms"].as_array().unwrap();
        assert_eq!(hist.len(), 2);
        let neurons: u64 = hist[0].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(neurons, w, "the first layer's histogram counts every neuron once");
        assert!(r["timings"]["pretrain_epoch_seconds"].as_array().unwrap().len() == 2);
        assert!(!r["machine"]["cpu"].as_str().unwrap().is_empty());
        assert!(r["machine"]["cores"].as_u64().unwrap() >= 1);
        assert!(!r["crate_version"].as_str().unwrap().is_empty() && r["git_commit"].is_string());
    }

    let csv = lines(&dir.join("summary.csv"));
    assert_eq!(csv.len(), 1 + widths.len());
    assert!(csv[0].starts_with("experiment,model,hidden,"));
    for w in widths {
        let row =
            csv.iter().find(|l| l.contains(&format!(",{w}-{w},"))).unwrap_or_else(|| panic!("csv: {w}"));
        let acc: f64 = row.split(',').nth(13).unwrap().parse().unwrap();
        assert!((0.5..1.0).contains(&acc), "{row}");
    }

    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("4 of 4 runs finished"), "{md}");
    assert!(
        md.contains("| 97% |") && md.contains("25.99 s") && md.contains("6.5%"),
        "thesis figures missing"
    );
    for w in widths {
        assert!(md.contains(&format!("\n| {w} | 1/1 |")), "report row for {w}");
    }
    for stem in ["accuracy_vs_width", "firing_rates"] {
        assert!(md.contains(&format!("({stem}.svg)")));
        let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{stem}.svg");
        assert!(svg.trim_end().ends_with("</svg>") && svg.len() > 2000, "{stem}.svg is empty or cut");
        let png = std::fs::read(dir.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}.png");
        assert!(png.len() > 5000, "{stem}.png is blank");
    }
}

#[test]
#[ignore = "needs MNIST: run with cargo xtask test"]
fn a_killed_sweep_resumes_without_repeating_finished_runs() {
    let out = tempfile::tempdir().unwrap();
    // Two seeds: eight runs, so that the kill lands mid-sweep.
    let mut child = experiment(out.path(), &["--seeds", "2"]).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    let runs_file = loop {
        if let Ok(entries) = std::fs::read_dir(out.path().join("thesis")) {
            let found = entries.flatten().map(|e| e.path().join("runs.jsonl")).find(|p| !lines(p).is_empty());
            if let Some(f) = found {
                break f;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(600), "no run finished in 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();

    let text = std::fs::read_to_string(&runs_file).unwrap();
    // Only whole lines count as finished; a torn tail (killed mid-write) must be ignored.
    let before: Vec<String> =
        text.split_inclusive('\n').filter(|l| l.ends_with('\n')).map(String::from).collect();
    assert!(!before.is_empty() && before.len() < 8, "killed after {} runs", before.len());

    let rerun = experiment(out.path(), &["--seeds", "2"]).output().unwrap();
    assert!(rerun.status.success());
    let log = String::from_utf8_lossy(&rerun.stderr);
    assert!(
        log.contains(&format!("{} finished, {} to run", before.len(), 8 - before.len())),
        "the rerun must skip the finished runs: {log}"
    );
    let after = lines(&runs_file);
    assert_eq!(after.len(), 8, "every run present once");
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old.trim_end(), new, "a finished run was rewritten or repeated");
    }
    let mut ids: Vec<String> = after
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "no run repeated");
    let dir = sweep_dir(out.path());
    assert_eq!(runs_file.parent().unwrap(), dir);
    assert!(std::fs::read_to_string(dir.join("report.md")).unwrap().contains("8 of 8 runs finished"));
    assert_eq!(lines(&dir.join("summary.csv")).len(), 5);
}
