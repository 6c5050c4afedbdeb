//! The registry of named, versioned recipes. A recipe expands the command-line options
//! into a deterministic list of runs and writes its own section of `report.md` and
//! its own plots; running, storing and summarising are shared.

use super::config::RunConfig;
use super::report::Setting;

pub mod criteria;
pub mod pretrain;
pub mod thesis;
pub mod width_search;

/// What a recipe needs to know to expand into runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The small CI budget instead of the full one.
    pub quick: bool,
    /// Seeds per setting.
    pub seeds: usize,
    /// The dataset's image shape, C × H × W.
    pub input: [usize; 3],
    /// The dataset's number of classes.
    pub classes: usize,
}

impl Plan {
    /// Input features of a dense first layer (C · H · W).
    pub fn input_features(&self) -> usize {
        self.input.iter().product()
    }

    /// The MLP spec with the given hidden widths, its ends following the data.
    pub fn mlp(&self, hidden: &[usize]) -> String {
        let mut s = format!("mlp:{}", self.input_features());
        for w in hidden {
            s.push_str(&format!("-{w}"));
        }
        s.push_str(&format!("-{}", self.classes));
        s
    }

    /// An unpruned run of `recipe` on the MLP with `hidden` widths in the thesis'
    /// setting: 10 epochs of SGD (lr 0.01, momentum 0.05, batch 64, constant rate) on the
    /// training split less 5,000 validation images. Recipes override what they vary.
    pub fn thesis_mlp_run(&self, recipe: &Recipe, hidden: &[usize], seed: u64) -> RunConfig {
        RunConfig {
            experiment: recipe.name.into(),
            version: recipe.version,
            model: self.mlp(hidden),
            hidden: hidden.to_vec(),
            pretrain_epochs: 10.0,
            criterion: "none".into(),
            schedule: "none".into(),
            strategy: "none".into(),
            retrain_epochs: 0,
            train_images: 0,
            validation: 5000,
            batch: 64,
            lr: 0.01,
            momentum: 0.05,
            seed,
            lr_schedule: "constant".into(),
            retrain_lr: None,
            retrain_momentum: None,
            weight_decay: 0.0,
        }
    }

    /// The seeds of a sweep: 1, 2, …, `seeds`.
    pub fn seed_list(&self) -> Vec<u64> {
        (1..=self.seeds as u64).collect()
    }
}

/// The plots a recipe asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotKind {
    /// Final (and pre-pruning) accuracy against hidden width, mean ± std over seeds.
    AccuracyVsWidth,
    /// Accuracy against the fraction of hidden neurons removed, one line per criterion.
    AccuracyVsPruned,
    /// Accuracy against the pre-training budget in epochs.
    AccuracyVsPretrain,
    /// Accuracy against MACs per image, with the Pareto front.
    AccuracyVsMacs,
    /// Firing-rate histograms per hidden layer.
    FiringRates,
}

/// A named, versioned experiment.
pub struct Recipe {
    /// The name on the command line.
    pub name: &'static str,
    /// Bumped whenever the runs a recipe expands into change meaning.
    pub version: u32,
    /// One line for the listing.
    pub about: &'static str,
    /// The runs, in a deterministic order.
    pub expand: fn(&Plan) -> Vec<RunConfig>,
    /// Writes the recipe's own section of `report.md` (Markdown) from the settings.
    pub section: fn(&[Setting]) -> String,
    /// The plots to draw.
    pub plots: &'static [PlotKind],
}

/// Every recipe, in the order `all` runs them.
pub fn all() -> [&'static Recipe; 4] {
    [&thesis::RECIPE, &criteria::RECIPE, &pretrain::RECIPE, &width_search::RECIPE]
}

/// The recipe called `name`.
pub fn find(name: &str) -> Option<&'static Recipe> {
    all().into_iter().find(|r| r.name == name)
}

/// The default number of seeds: one for `--quick`, three otherwise.
pub fn default_seeds(quick: bool) -> usize {
    if quick { 1 } else { 3 }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn plan(quick: bool) -> Plan {
        Plan { quick, seeds: 2, input: [1, 28, 28], classes: 10 }
    }

    #[test]
    fn every_recipe_expands_deterministically_into_unique_runs() {
        for quick in [true, false] {
            for r in all() {
                let a = (r.expand)(&plan(quick));
                let b = (r.expand)(&plan(quick));
                assert!(!a.is_empty(), "{} expands to nothing", r.name);
                assert_eq!(a, b, "{} is not deterministic", r.name);
                let ids: BTreeSet<String> = a.iter().map(|c| c.id()).collect();
                assert_eq!(ids.len(), a.len(), "{}: duplicate runs", r.name);
                assert!(a.iter().all(|c| c.experiment == r.name && c.version == r.version));
                assert!(a.iter().all(|c| c.model.starts_with("mlp:784-") || c.model == "lenet5"));
            }
        }
    }

    /// Pinned: the ids of every run of every recipe. A change here means stored sweeps
    /// would stop resuming; it must come with a recipe version bump, never from a refactor.
    #[test]
    fn run_ids_are_pinned() {
        let mut all_ids = String::new();
        for quick in [true, false] {
            for r in all() {
                for c in (r.expand)(&plan(quick)) {
                    all_ids.push_str(&c.id());
                }
            }
        }
        assert_eq!(crate::experiment::config::short_hash(all_ids.as_bytes()), "8db72e3b9193c61b");
    }

    #[test]
    fn mlp_spec_follows_the_data() {
        let p = Plan { quick: true, seeds: 1, input: [1, 8, 8], classes: 3 };
        assert_eq!(p.mlp(&[5, 6]), "mlp:64-5-6-3");
    }

    #[test]
    fn find_knows_every_name() {
        for n in ["thesis", "criteria", "pretrain", "width-search"] {
            assert_eq!(find(n).unwrap().name, n);
        }
        assert!(find("all").is_none() && find("nope").is_none());
    }
}
