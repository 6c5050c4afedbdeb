//! `cargo xtask experiment merge DIR…`: joins the shard directories of one sweep into
//! the sweep's own directory, as if it had run on one machine, and writes its report.
//!
//! The merged `runs.jsonl` is written whole and atomically, in plan order, each run
//! once (shards that overlap, or a shard merged twice, do no harm). A later unsharded
//! run of the same arguments resumes from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure};

use super::recipes;
use super::shard::Shard;
use super::store::{self, RUNS_FILE, RunRecord};
use super::sweep::{Manifest, sweep_dir};

/// Merges `dirs` (shards of one sweep) into `out/<experiment>/<sweep>/`; returns that directory.
pub fn merge(dirs: &[PathBuf], out: &Path) -> anyhow::Result<PathBuf> {
    ensure!(!dirs.is_empty(), "merge needs at least one shard directory");
    let manifests: Vec<Manifest> = dirs.iter().map(|d| Manifest::read(d)).collect::<anyhow::Result<_>>()?;
    let first = &manifests[0];
    for (m, d) in manifests.iter().zip(dirs).skip(1) {
        if (m.experiment.as_str(), m.version, m.sweep.as_str())
            != (&first.experiment, first.version, &first.sweep)
            || m.runs != first.runs
        {
            bail!(
                "{} holds sweep {}/{} (version {}), not {}/{} (version {}): only shards of one sweep merge",
                d.display(),
                m.experiment,
                m.sweep,
                m.version,
                first.experiment,
                first.sweep,
                first.version
            );
        }
    }
    let recipe = recipes::find(&first.experiment).ok_or_else(|| {
        anyhow::anyhow!("unknown experiment `{}` in {}", first.experiment, dirs[0].display())
    })?;

    let target = sweep_dir(out, &first.experiment, &first.sweep, Shard::ALL);
    let mut by_id: BTreeMap<String, RunRecord> = BTreeMap::new();
    let mut sources: Vec<PathBuf> = dirs.to_vec();
    if !dirs.iter().any(|d| same_dir(d, &target)) {
        sources.push(target.clone());
    }
    for d in &sources {
        for r in store::read_records(&d.join(RUNS_FILE))? {
            by_id.entry(r.id.clone()).or_insert(r);
        }
    }
    let merged: Vec<RunRecord> = first.runs.iter().filter_map(|c| by_id.remove(&c.id())).collect();
    let mut text = String::new();
    for r in &merged {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    let manifest = Manifest { shard: Shard::ALL.to_string(), ..first.clone() };
    std::fs::create_dir_all(&target)?;
    store::write_atomic(&target.join(RUNS_FILE), text.as_bytes())?;
    manifest.write(&target)?;
    super::report::write_reports(&target, recipe, &manifest, &merged)?;
    eprintln!(
        "merged {} shard directories into {}: {} of {} runs",
        dirs.len(),
        target.display(),
        merged.len(),
        manifest.runs.len()
    );
    Ok(target)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use indicatif::ProgressBar;

    use super::*;
    use crate::experiment::config::RunConfig;
    use crate::experiment::recipes::{Plan, thesis};
    use crate::experiment::store::{Machine, Metrics, Timings};
    use crate::experiment::sweep::{Executor, Provenance, run_sweep};

    struct Width;

    impl Executor for Width {
        fn run(&mut self, c: &RunConfig, _: &Path, _: &ProgressBar) -> anyhow::Result<(Metrics, Timings)> {
            let m = Metrics {
                trained_accuracy: 0.9,
                test_accuracy: 0.8 + c.hidden[0] as f64 / 10_000.0,
                hidden_after: c.hidden.clone(),
                ..Metrics::default()
            };
            Ok((m, Timings::default()))
        }
    }

    #[test]
    fn shards_merge_into_the_unsharded_result() {
        let out = tempfile::tempdir().unwrap();
        let plan = Plan { quick: true, seeds: 2, input: [1, 28, 28], classes: 10 };
        let prov = Provenance {
            crate_version: "t".into(),
            git_commit: "c".into(),
            machine: Machine::default(),
            threads: 1,
        };
        let shards: Vec<PathBuf> = (1..=3)
            .map(|i| {
                run_sweep(&thesis::RECIPE, &plan, Shard { index: i, count: 3 }, out.path(), &mut Width, &prov)
                    .unwrap()
            })
            .collect();
        // Merging only two shards gives an honest, incomplete report.
        let partial = merge(&shards[..2], out.path()).unwrap();
        let all = (thesis::RECIPE.expand)(&plan);
        let n_partial = store::read_records(&partial.join(RUNS_FILE)).unwrap().len();
        assert!(n_partial < all.len());
        assert!(std::fs::read_to_string(partial.join("report.md")).unwrap().contains("Incomplete"));
        // Then all three (one twice): every run once, in plan order.
        let mut again = shards.clone();
        again.push(shards[0].clone());
        let merged = merge(&again, out.path()).unwrap();
        assert_eq!(merged, partial);
        let recs = store::read_records(&merged.join(RUNS_FILE)).unwrap();
        let ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, all.iter().map(|c| c.id()).collect::<Vec<_>>());
        assert!(!std::fs::read_to_string(merged.join("report.md")).unwrap().contains("Incomplete"));
        assert_eq!(Manifest::read(&merged).unwrap().shard, "1/1");
    }

    #[test]
    fn different_sweeps_refuse_to_merge() {
        let out = tempfile::tempdir().unwrap();
        let prov = Provenance {
            crate_version: "t".into(),
            git_commit: "c".into(),
            machine: Machine::default(),
            threads: 1,
        };
        let a = Plan { quick: true, seeds: 1, input: [1, 28, 28], classes: 10 };
        let b = Plan { seeds: 2, ..a.clone() };
        let da = run_sweep(&thesis::RECIPE, &a, Shard::ALL, out.path(), &mut Width, &prov).unwrap();
        let db = run_sweep(&thesis::RECIPE, &b, Shard::ALL, out.path(), &mut Width, &prov).unwrap();
        let err = merge(&[da, db], out.path()).unwrap_err().to_string();
        assert!(err.contains("only shards of one sweep merge"), "{err}");
    }
}
