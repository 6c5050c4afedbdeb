//! Results on disk: `runs.jsonl` (one JSON object per finished run, appended whole and
//! fsynced) and atomic writes for everything else (temp file + rename).
//!
//! A sweep that is killed leaves at worst a torn last line in `runs.jsonl`; reading
//! ignores it and opening for append cuts it off, so a rerun skips exactly the runs
//! that finished and no file is ever half-written.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::config::RunConfig;

/// The file name of the run log inside a sweep directory.
pub const RUNS_FILE: &str = "runs.jsonl";

/// One finished run, as one line of `runs.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// `config.id()`, stored so that a reader need not rehash.
    pub id: String,
    /// The full configuration, seed included.
    pub config: RunConfig,
    /// What the run measured.
    pub metrics: Metrics,
    /// Where the time went.
    pub timings: Timings,
    /// The version of the xtask crate that produced the run.
    pub crate_version: String,
    /// `git rev-parse HEAD` of the checkout (with `-dirty` when it had changes), or `unknown`.
    pub git_commit: String,
    /// The machine the run ran on.
    pub machine: Machine,
    /// Threads of the rayon pool the run used.
    pub threads: usize,
    /// When the run finished, seconds since the Unix epoch.
    pub finished_at: u64,
}

/// Measurements of one run. Accuracies are fractions in [0, 1] on the test set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// Test accuracy after pre-training, before pruning.
    pub trained_accuracy: f64,
    /// Test accuracy right after surgery, before any retraining (None: not pruned).
    pub pruned_accuracy: Option<f64>,
    /// Test accuracy of the final model (after retraining, if any).
    pub test_accuracy: f64,
    /// Mean cross-entropy of the final model on the test set.
    pub test_loss: f64,
    /// Hidden widths of the final model (neurons or channels per hidden layer).
    pub hidden_after: Vec<usize>,
    /// Parameters of the model before pruning.
    pub params_before: usize,
    /// Parameters of the final model.
    pub params_after: usize,
    /// Multiply-accumulates per image before pruning.
    pub macs_before: usize,
    /// Multiply-accumulates per image of the final model.
    pub macs_after: usize,
    /// Measured inference speed of the final model on the test set, images per second.
    pub images_per_second: f64,
    /// Inference speed of the model before pruning, images per second.
    pub images_per_second_before: f64,
    /// Per hidden layer, a histogram of the neurons' firing rates on the validation
    /// split (bins of width 1 / len over [0, 1]) of the trained model before pruning.
    pub firing_histograms: Vec<Vec<u32>>,
    /// Activation-guided search: the widths tried per round and the test accuracy each reached.
    pub search_rounds: Vec<SearchRound>,
}

/// One round of the activation-guided width search.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchRound {
    /// Hidden widths of the round's model.
    pub hidden: Vec<usize>,
    /// Its validation accuracy after training (the search never looks at the test set).
    pub validation_accuracy: f64,
    /// Its MACs per image.
    pub macs: usize,
    /// Whether the search kept it (within δ of the wide model). Absent in records of
    /// recipe versions that stopped at the first rejected round: all but the last were kept.
    #[serde(default)]
    pub accepted: Option<bool>,
}

/// Wall-clock timings of one run, seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timings {
    /// Seconds per epoch of pre-training.
    pub pretrain_epoch_seconds: Vec<f64>,
    /// Seconds per epoch of retraining after pruning.
    pub retrain_epoch_seconds: Vec<f64>,
    /// Seconds spent recording activations, scoring and cutting.
    pub prune_seconds: f64,
    /// Seconds for the whole run.
    pub total_seconds: f64,
}

/// The machine a run ran on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` from `/proc/cpuinfo`, or `unknown`.
    pub cpu: String,
    /// Logical cores the process may use.
    pub cores: usize,
    /// `std::env::consts::OS` / `ARCH`.
    pub os: String,
}

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Machine {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Machine { cpu, cores, os: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH) }
    }
}

/// The commit of the checkout at `root`, with `-dirty` when the tree has changes.
pub fn git_commit(root: &Path) -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(head) => match run(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{head}-dirty"),
            _ => head,
        },
        None => "unknown".into(),
    }
}

/// The run log of one sweep directory.
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// Opens (creating) `dir/runs.jsonl` for appending. A torn last line left by a killed
    /// process is cut off, so that the next line does not run into it.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(RUNS_FILE);
        if path.exists() {
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if whole < bytes.len() {
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(whole as u64)
                    .with_context(|| format!("cutting the torn tail of {}", path.display()))?;
                f.sync_all()?;
            }
        }
        Ok(Store { path })
    }

    /// The finished runs, in the order they finished.
    pub fn records(&self) -> anyhow::Result<Vec<RunRecord>> {
        read_records(&self.path)
    }

    /// Appends one finished run as one complete line, written with a single `write`
    /// call on an `O_APPEND` file and fsynced before returning.
    pub fn append(&self, record: &RunRecord) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        f.write_all(line.as_bytes()).with_context(|| format!("appending to {}", self.path.display()))?;
        f.sync_data()?;
        Ok(())
    }
}

/// Reads a `runs.jsonl`: a missing file is empty; an unterminated or unparsable last
/// line is a torn write and is ignored; a bad line before the last is an error.
pub fn read_records(path: &Path) -> anyhow::Result<Vec<RunRecord>> {
    let text = match fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let terminated = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        if last && !terminated {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<RunRecord>(line) {
            Ok(r) => out.push(r),
            Err(_) if last => break,
            Err(e) => bail!("{}:{}: not a run record: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

/// The ids of `records`.
pub fn finished_ids(records: &[RunRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory,
/// fsynced, then renamed over `path`. A reader sees the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
pub(crate) fn sample_record(seed: u64, width: usize, accuracy: f64) -> RunRecord {
    let config = super::config::sample(seed, width);
    RunRecord {
        id: config.id(),
        config,
        metrics: Metrics {
            trained_accuracy: accuracy - 0.01,
            test_accuracy: accuracy,
            hidden_after: vec![width / 2, width / 2],
            firing_histograms: vec![vec![1, 2, 3, 4], vec![4, 3, 2, 1]],
            ..Metrics::default()
        },
        timings: Timings { pretrain_epoch_seconds: vec![1.5], ..Timings::default() },
        crate_version: "0.1.0".into(),
        git_commit: "abc".into(),
        machine: Machine::default(),
        threads: 1,
        finished_at: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.records().unwrap().is_empty());
        store.append(&sample_record(1, 100, 0.9)).unwrap();
        store.append(&sample_record(2, 100, 0.8)).unwrap();
        let got = store.records().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].config.seed, 2);
        assert_eq!(got[1].metrics, sample_record(2, 100, 0.8).metrics);
        assert_eq!(finished_ids(&got).len(), 2);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append(&sample_record(1, 100, 0.9)).unwrap();
        let path = dir.path().join(RUNS_FILE);
        let whole = serde_json::to_string(&sample_record(2, 100, 0.9)).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&whole.as_bytes()[..whole.len() / 2]).unwrap();
        drop(f);
        assert_eq!(read_records(&path).unwrap().len(), 1, "torn line must be ignored");

        let store = Store::open(dir.path()).unwrap();
        store.append(&sample_record(3, 100, 0.9)).unwrap();
        let got = store.records().unwrap();
        assert_eq!(got.iter().map(|r| r.config.seed).collect::<Vec<_>>(), vec![1, 3]);
        assert!(fs::read_to_string(&path).unwrap().lines().all(|l| l.starts_with('{') && l.ends_with('}')));
    }

    #[test]
    fn a_complete_but_garbled_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RUNS_FILE);
        let good = serde_json::to_string(&sample_record(1, 100, 0.9)).unwrap();
        fs::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
        let err = read_records(&path).unwrap_err().to_string();
        assert!(err.contains(":2:"), "{err}");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("summary.csv");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn machine_names_a_cpu_and_cores() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(!m.cpu.is_empty());
    }
}
