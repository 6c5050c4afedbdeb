//! `summary.csv` and `report.md`: runs grouped into settings (the same config but for
//! the seed), with means and standard deviations over seeds, the recipe's own tables
//! beside the published figures, and the plots embedded.

use std::fmt::Write as _;
use std::path::Path;

use super::config::RunConfig;
use super::recipes::Recipe;
use super::store::{RunRecord, write_atomic};
use super::sweep::Manifest;

/// Runs that differ only in their seed.
#[derive(Clone, Debug)]
pub struct Setting {
    /// The setting's config (the seed of its first planned run).
    pub config: RunConfig,
    /// Seeds planned for the setting.
    pub planned: usize,
    /// The finished runs, in plan order.
    pub runs: Vec<RunRecord>,
}

/// Mean and sample standard deviation over `n` values (std 0 for n ≤ 1).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stat {
    /// The mean.
    pub mean: f64,
    /// The sample standard deviation (n − 1 in the denominator).
    pub std: f64,
    /// How many values.
    pub n: usize,
}

impl Stat {
    /// The statistics of `values` (NaN mean when empty).
    pub fn of(values: &[f64]) -> Stat {
        let n = values.len();
        if n == 0 {
            return Stat { mean: f64::NAN, std: f64::NAN, n };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Stat { mean, std, n }
    }

    /// `mean ± std` as percentages with two decimals, or `–` when there is no value.
    pub fn pct(&self) -> String {
        if self.n == 0 {
            "–".into()
        } else if self.n == 1 {
            format!("{:.2}%", 100.0 * self.mean)
        } else {
            format!("{:.2} ± {:.2}%", 100.0 * self.mean, 100.0 * self.std)
        }
    }
}

impl Setting {
    /// Statistics of `f` over the finished runs.
    pub fn stat(&self, f: impl Fn(&RunRecord) -> f64) -> Stat {
        Stat::of(&self.runs.iter().map(f).collect::<Vec<_>>())
    }

    /// Final test accuracy over seeds.
    pub fn accuracy(&self) -> Stat {
        self.stat(|r| r.metrics.test_accuracy)
    }

    /// Test accuracy before pruning over seeds.
    pub fn trained_accuracy(&self) -> Stat {
        self.stat(|r| r.metrics.trained_accuracy)
    }

    /// Mean seconds per pre-training epoch over seeds.
    pub fn epoch_seconds(&self) -> Stat {
        Stat::of(
            &self
                .runs
                .iter()
                .flat_map(|r| r.timings.pretrain_epoch_seconds.iter().copied())
                .collect::<Vec<_>>(),
        )
    }

    /// Fraction of hidden neurons removed, averaged over seeds.
    pub fn fraction_removed(&self) -> Stat {
        self.stat(|r| {
            let before: usize = r.config.hidden.iter().sum();
            let after: usize = r.metrics.hidden_after.iter().sum();
            if before == 0 { 0.0 } else { 1.0 - after as f64 / before as f64 }
        })
    }

    /// Mean hidden widths after pruning, per layer, rounded.
    pub fn hidden_after(&self) -> Vec<usize> {
        let layers = self.runs.iter().map(|r| r.metrics.hidden_after.len()).max().unwrap_or(0);
        (0..layers)
            .map(|l| {
                let s = self.stat(|r| r.metrics.hidden_after.get(l).copied().unwrap_or(0) as f64);
                s.mean.round() as usize
            })
            .collect()
    }
}

/// Groups `records` into the settings of `planned`, in plan order. Records of runs
/// that are not in the plan are left out.
pub fn settings(planned: &[RunConfig], records: &[RunRecord]) -> Vec<Setting> {
    let mut out: Vec<Setting> = Vec::new();
    for c in planned {
        let key = c.setting_key();
        let id = c.id();
        let pos = match out.iter().position(|s| s.config.setting_key() == key) {
            Some(p) => p,
            None => {
                out.push(Setting { config: c.clone(), planned: 0, runs: Vec::new() });
                out.len() - 1
            }
        };
        out[pos].planned += 1;
        if let Some(r) = records.iter().find(|r| r.id == id) {
            out[pos].runs.push(r.clone());
        }
    }
    out
}

fn join(v: &[usize]) -> String {
    v.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("-")
}

/// `summary.csv`: one row per setting.
pub fn summary_csv(settings: &[Setting]) -> String {
    let mut s = String::from(
        "experiment,model,hidden,pretrain_epochs,criterion,schedule,strategy,retrain_epochs,train_images,\
         runs,planned,trained_accuracy_mean,trained_accuracy_std,test_accuracy_mean,test_accuracy_std,\
         hidden_after,fraction_removed,params_before,params_after,macs_before,macs_after,\
         epoch_seconds_mean,images_per_second_before,images_per_second_after\n",
    );
    for st in settings {
        let c = &st.config;
        let (tr, acc) = (st.trained_accuracy(), st.accuracy());
        let mean_of = |f: &dyn Fn(&RunRecord) -> f64| st.stat(f).mean;
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{:.6},{:.6},{:.6},{:.6},{},{:.4},{:.0},{:.0},{:.0},{:.0},{:.4},{:.1},{:.1}",
            c.experiment,
            c.model,
            join(&c.hidden),
            c.pretrain_epochs,
            c.criterion,
            c.schedule,
            c.strategy,
            c.retrain_epochs,
            c.train_images,
            st.runs.len(),
            st.planned,
            tr.mean,
            tr.std,
            acc.mean,
            acc.std,
            join(&st.hidden_after()),
            st.fraction_removed().mean,
            mean_of(&|r| r.metrics.params_before as f64),
            mean_of(&|r| r.metrics.params_after as f64),
            mean_of(&|r| r.metrics.macs_before as f64),
            mean_of(&|r| r.metrics.macs_after as f64),
            st.epoch_seconds().mean,
            mean_of(&|r| r.metrics.images_per_second_before),
            mean_of(&|r| r.metrics.images_per_second),
        );
    }
    s
}

/// `report.md`: what ran where, the recipe's section, every setting, and the plots.
pub fn report_md(recipe: &Recipe, manifest: &Manifest, settings: &[Setting], plots: &[String]) -> String {
    let runs: Vec<&RunRecord> = settings.iter().flat_map(|s| s.runs.iter()).collect();
    let planned: usize = settings.iter().map(|s| s.planned).sum();
    let mut md = String::new();
    let _ = writeln!(md, "# Experiment `{}` (recipe version {})\n", recipe.name, recipe.version);
    let _ = writeln!(md, "{}\n", recipe.about);
    let _ = writeln!(
        md,
        "Sweep `{}`{}: {} of {} runs finished.",
        manifest.sweep,
        if manifest.quick { " (--quick budget)" } else { "" },
        runs.len(),
        planned
    );
    if runs.len() < planned {
        let _ =
            writeln!(md, "\n**Incomplete**: rerun the same command (or merge the missing shards) to finish.");
    }
    let mut machines: Vec<String> = runs
        .iter()
        .map(|r| format!("{} ({} cores, {} threads)", r.machine.cpu, r.machine.cores, r.threads))
        .collect();
    machines.sort();
    machines.dedup();
    let mut commits: Vec<&str> = runs.iter().map(|r| r.git_commit.as_str()).collect();
    commits.sort();
    commits.dedup();
    let total: f64 = runs.iter().map(|r| r.timings.total_seconds).sum();
    let _ = writeln!(md, "\nMachine: {}. Commit: {}.", machines.join("; "), commits.join(", "));
    let _ =
        writeln!(md, "Compute: {:.1} s in total over the finished runs ({:.1} min).\n", total, total / 60.0);
    md.push_str(&(recipe.section)(settings));
    let _ = writeln!(md, "\n## Every setting\n");
    md.push_str(
        "| model | hidden | pre-train ep. | criterion | schedule | strategy | runs | before pruning | final | widths after | MACs after | s/epoch |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for st in settings {
        let c = &st.config;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {}/{} | {} | {} | {} | {:.0} | {:.2} |",
            c.model,
            join(&c.hidden),
            c.pretrain_epochs,
            c.criterion,
            c.schedule,
            c.strategy,
            st.runs.len(),
            st.planned,
            st.trained_accuracy().pct(),
            st.accuracy().pct(),
            join(&st.hidden_after()),
            st.stat(|r| r.metrics.macs_after as f64).mean,
            st.epoch_seconds().mean,
        );
    }
    if !plots.is_empty() {
        let _ = writeln!(md, "\n## Plots\n");
        for p in plots {
            let _ = writeln!(md, "![{p}]({p}.svg)\n");
        }
    }
    md
}

/// Writes `summary.csv`, `report.md` and the plots into `dir`, each atomically.
pub fn write_reports(
    dir: &Path,
    recipe: &Recipe,
    manifest: &Manifest,
    records: &[RunRecord],
) -> anyhow::Result<()> {
    let settings = settings(&manifest.runs, records);
    write_atomic(&dir.join("summary.csv"), summary_csv(&settings).as_bytes())?;
    let plots = super::plot::draw(dir, recipe.plots, &settings)?;
    write_atomic(&dir.join("report.md"), report_md(recipe, manifest, &settings, &plots).as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::config::sample;
    use crate::experiment::store::sample_record;

    #[test]
    fn stat_matches_hand_computation() {
        let s = Stat::of(&[0.9, 0.8, 1.0]);
        assert!((s.mean - 0.9).abs() < 1e-12);
        assert!((s.std - 0.1).abs() < 1e-12);
        assert_eq!(Stat::of(&[0.5]).std, 0.0);
        assert!(Stat::of(&[]).mean.is_nan());
        assert_eq!(Stat::of(&[0.9, 0.8, 1.0]).pct(), "90.00 ± 10.00%");
    }

    #[test]
    fn settings_group_seeds_in_plan_order_and_count_missing_runs() {
        let plan = vec![sample(1, 200), sample(2, 200), sample(1, 100), sample(2, 100)];
        let recs = vec![sample_record(2, 100, 0.9), sample_record(1, 200, 0.7), sample_record(2, 200, 0.9)];
        let s = settings(&plan, &recs);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].config.hidden, vec![200, 200]);
        assert_eq!((s[0].runs.len(), s[0].planned), (2, 2));
        assert_eq!((s[1].runs.len(), s[1].planned), (1, 2));
        assert!((s[0].accuracy().mean - 0.8).abs() < 1e-12);
        assert!((s[0].fraction_removed().mean - 0.5).abs() < 1e-12);
        let csv = summary_csv(&s);
        assert_eq!(csv.lines().count(), 3);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("thesis,mlp:784-200-200-10,200-200,1,entropy,dead,reinit,1,0,2,2,")
        );
    }
}
