//! Running a sweep: the directory it lives in, its manifest (`sweep.json`), the loop
//! over the runs that are not finished yet, and the progress bar.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::config::{RunConfig, short_hash};
use super::recipes::{Plan, Recipe};
use super::shard::Shard;
use super::store::{self, Machine, Metrics, RunRecord, Store, Timings};

/// The file name of a sweep's manifest.
pub const MANIFEST_FILE: &str = "sweep.json";

/// What a sweep directory holds: the whole plan (every shard's runs) and which slice
/// this directory runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The recipe's name.
    pub experiment: String,
    /// The recipe's version.
    pub version: u32,
    /// The sweep's name: budget, seeds and a hash of every run id (stable for the same arguments).
    pub sweep: String,
    /// Whether the sweep uses the `--quick` budget.
    pub quick: bool,
    /// Seeds per setting.
    pub seeds: usize,
    /// The slice this directory runs, `i/n`.
    pub shard: String,
    /// Every run of the whole sweep, in plan order.
    pub runs: Vec<RunConfig>,
}

impl Manifest {
    /// The runs this directory is responsible for.
    pub fn owned(&self) -> anyhow::Result<Vec<RunConfig>> {
        let shard: Shard = self.shard.parse().map_err(anyhow::Error::msg)?;
        Ok(shard.select(&self.runs))
    }

    /// Reads `dir/sweep.json`.
    pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let p = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    }

    /// Writes `dir/sweep.json` atomically.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        store::write_atomic(&dir.join(MANIFEST_FILE), serde_json::to_string_pretty(self)?.as_bytes())
    }
}

/// The sweep's name for a plan: stable for the same arguments, different for any
/// change of the runs.
pub fn sweep_name(quick: bool, seeds: usize, runs: &[RunConfig]) -> String {
    let ids: Vec<String> = runs.iter().map(|r| r.id()).collect();
    format!(
        "{}-s{}-{}",
        if quick { "quick" } else { "full" },
        seeds,
        &short_hash(ids.join(",").as_bytes())[..10]
    )
}

/// The directory of one shard of a sweep (the sweep's own directory for `1/1`).
pub fn sweep_dir(out: &Path, experiment: &str, sweep: &str, shard: Shard) -> PathBuf {
    let name = if shard == Shard::ALL {
        sweep.to_string()
    } else {
        format!("{sweep}.shard-{}-of-{}", shard.index, shard.count)
    };
    out.join(experiment).join(name)
}

/// Does the work of one run. The sweep directory is given for caches (pre-trained
/// models shared between runs).
pub trait Executor {
    /// Runs `config` to the end and says what it measured.
    fn run(
        &mut self,
        config: &RunConfig,
        dir: &Path,
        bar: &ProgressBar,
    ) -> anyhow::Result<(Metrics, Timings)>;
}

/// Facts about the process stored with every run.
pub struct Provenance {
    /// The crate version.
    pub crate_version: String,
    /// The git commit of the checkout.
    pub git_commit: String,
    /// This machine.
    pub machine: Machine,
    /// Threads of the pool.
    pub threads: usize,
}

impl Provenance {
    /// Describes this process.
    pub fn detect(threads: usize) -> Provenance {
        Provenance {
            crate_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: store::git_commit(&crate::project_root()),
            machine: Machine::detect(),
            threads,
        }
    }
}

/// Runs the unfinished runs of `shard` of `recipe`'s sweep for `plan` under `out`,
/// then writes the reports. Returns the sweep directory.
pub fn run_sweep(
    recipe: &Recipe,
    plan: &Plan,
    shard: Shard,
    out: &Path,
    exec: &mut dyn Executor,
    prov: &Provenance,
) -> anyhow::Result<PathBuf> {
    let runs = (recipe.expand)(plan);
    let sweep = sweep_name(plan.quick, plan.seeds, &runs);
    let dir = sweep_dir(out, recipe.name, &sweep, shard);
    let manifest = Manifest {
        experiment: recipe.name.into(),
        version: recipe.version,
        sweep,
        quick: plan.quick,
        seeds: plan.seeds,
        shard: shard.to_string(),
        runs,
    };
    let store = Store::open(&dir)?;
    manifest.write(&dir)?;
    let mut records = store.records()?;
    let done = store::finished_ids(&records);
    let owned = manifest.owned()?;
    let todo: Vec<&RunConfig> = owned.iter().filter(|c| !done.contains(&c.id())).collect();
    eprintln!(
        "experiment {} → {}: {} runs in this shard, {} finished, {} to run",
        recipe.name,
        dir.display(),
        owned.len(),
        owned.len() - todo.len(),
        todo.len()
    );

    let bar = ProgressBar::new(owned.len() as u64).with_position((owned.len() - todo.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} runs (eta {eta}) {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let mut result = Ok(());
    for config in todo {
        bar.set_message(format!("{} {} seed {}", config.model, config.criterion, config.seed));
        let started = std::time::Instant::now();
        match exec.run(config, &dir, &bar) {
            Ok((metrics, mut timings)) => {
                timings.total_seconds = started.elapsed().as_secs_f64();
                let record = RunRecord {
                    id: config.id(),
                    config: config.clone(),
                    metrics,
                    timings,
                    crate_version: prov.crate_version.clone(),
                    git_commit: prov.git_commit.clone(),
                    machine: prov.machine.clone(),
                    threads: prov.threads,
                    finished_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                };
                store.append(&record)?;
                // `suspend` rather than `println`: a hidden bar (no terminal) swallows `println`.
                bar.suspend(|| {
                    eprintln!(
                        "run {} {} {}/{}/{} seed {}: accuracy {:.2}% → {:.2}% (widths {:?}), {:.1} s",
                        record.id,
                        config.model,
                        config.criterion,
                        config.schedule,
                        config.strategy,
                        config.seed,
                        100.0 * record.metrics.trained_accuracy,
                        100.0 * record.metrics.test_accuracy,
                        record.metrics.hidden_after,
                        record.timings.total_seconds
                    )
                });
                records.push(record);
                bar.inc(1);
            }
            Err(e) => {
                result = Err(e.context(format!("run {} ({})", config.id(), config.canonical_json())));
                break;
            }
        }
    }
    bar.finish_and_clear();
    super::report::write_reports(&dir, recipe, &manifest, &records)?;
    result.map(|()| dir)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::experiment::recipes::thesis;

    /// Pretends to train: accuracy grows with the width; counts the runs it did.
    struct Fake<'a> {
        ran: &'a RefCell<Vec<String>>,
        fail_after: Option<usize>,
    }

    impl Executor for Fake<'_> {
        fn run(&mut self, c: &RunConfig, _: &Path, _: &ProgressBar) -> anyhow::Result<(Metrics, Timings)> {
            if self.fail_after.is_some_and(|n| self.ran.borrow().len() >= n) {
                anyhow::bail!("killed");
            }
            self.ran.borrow_mut().push(c.id());
            let acc = 0.9 + c.hidden[0] as f64 / 20_000.0 + c.seed as f64 / 1000.0;
            let m = Metrics {
                trained_accuracy: acc,
                test_accuracy: acc - 0.001,
                hidden_after: c.hidden.iter().map(|w| w / 2).collect(),
                firing_histograms: vec![vec![1, 5, 9, 3]; c.hidden.len()],
                ..Metrics::default()
            };
            Ok((m, Timings { pretrain_epoch_seconds: vec![0.5], ..Timings::default() }))
        }
    }

    fn prov() -> Provenance {
        Provenance {
            crate_version: "t".into(),
            git_commit: "c".into(),
            machine: Machine::default(),
            threads: 1,
        }
    }

    fn plan() -> Plan {
        Plan { quick: true, seeds: 2, input: [1, 28, 28], classes: 10 }
    }

    #[test]
    fn a_failed_sweep_resumes_without_repeating_finished_runs() {
        let out = tempfile::tempdir().unwrap();
        let ran = RefCell::new(Vec::new());
        let err = run_sweep(
            &thesis::RECIPE,
            &plan(),
            Shard::ALL,
            out.path(),
            &mut Fake { ran: &ran, fail_after: Some(3) },
            &prov(),
        );
        assert!(err.is_err());
        assert_eq!(ran.borrow().len(), 3);
        let dir = run_sweep(
            &thesis::RECIPE,
            &plan(),
            Shard::ALL,
            out.path(),
            &mut Fake { ran: &ran, fail_after: None },
            &prov(),
        )
        .unwrap();
        let all = (thesis::RECIPE.expand)(&plan());
        let mut ids = ran.borrow().clone();
        assert_eq!(ids.len(), all.len(), "every run exactly once");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
        let recs = store::read_records(&dir.join(store::RUNS_FILE)).unwrap();
        assert_eq!(recs.len(), all.len());
        for f in ["summary.csv", "report.md", "sweep.json"] {
            assert!(dir.join(f).metadata().unwrap().len() > 0, "{f}");
        }
        // A third call has nothing to do.
        run_sweep(
            &thesis::RECIPE,
            &plan(),
            Shard::ALL,
            out.path(),
            &mut Fake { ran: &ran, fail_after: Some(0) },
            &prov(),
        )
        .unwrap();
    }

    #[test]
    fn the_sweep_name_is_stable_and_tracks_the_plan() {
        let runs = (thesis::RECIPE.expand)(&plan());
        assert_eq!(sweep_name(true, 2, &runs), sweep_name(true, 2, &(thesis::RECIPE.expand)(&plan())));
        assert_ne!(sweep_name(true, 2, &runs), sweep_name(true, 2, &runs[1..]));
        let d = sweep_dir(Path::new("r"), "thesis", "quick-s1-x", Shard { index: 2, count: 3 });
        assert_eq!(d, Path::new("r/thesis/quick-s1-x.shard-2-of-3"));
    }
}
