//! `pretrain`: the thesis' claim that "too much pre-training may not be necessary for
//! pruning". Prune after 0.25, 0.5, 1, 2 and 5 epochs of pre-training and after full
//! training, then retrain with the same budget; accuracy against pre-training.

use std::fmt::Write as _;

use super::{Plan, PlotKind, Recipe};
use crate::experiment::config::RunConfig;
use crate::experiment::report::Setting;

/// The recipe.
pub static RECIPE: Recipe = Recipe {
    name: "pretrain",
    version: 1,
    about: "MLP 784-600-600-10 (thesis setting) pruned by activation status after 0.25, 0.5, 1, 2, 5 epochs \
            of pre-training and after full training (10), then fine-tuned with the same budget.",
    expand,
    section,
    plots: &[PlotKind::AccuracyVsPretrain],
};

fn expand(plan: &Plan) -> Vec<RunConfig> {
    let (budgets, retrain, train_images, validation, w) = if plan.quick {
        (vec![0.25, 1.0], 1, 6000, 1000, 100)
    } else {
        (vec![0.25, 0.5, 1.0, 2.0, 5.0, 10.0], 5, 0, 5000, 600)
    };
    let mut runs = Vec::new();
    for &pre in &budgets {
        for &seed in &plan.seed_list() {
            runs.push(RunConfig {
                pretrain_epochs: pre,
                criterion: "entropy".into(),
                schedule: "ratio:0.75".into(),
                strategy: "finetune".into(),
                retrain_epochs: retrain,
                train_images,
                validation,
                ..plan.thesis_mlp_run(&RECIPE, &[w, w], seed)
            });
        }
    }
    runs
}

fn section(settings: &[Setting]) -> String {
    let mut md = String::from("## Accuracy against pre-training before pruning\n\n");
    md.push_str("| pre-training epochs | runs | before pruning | right after pruning | after fine-tuning |\n|---|---|---|---|---|\n");
    for s in settings {
        let pruned = s.stat(|r| r.metrics.pruned_accuracy.unwrap_or(f64::NAN));
        let _ = writeln!(
            md,
            "| {} | {}/{} | {} | {} | {} |",
            s.config.pretrain_epochs,
            s.runs.len(),
            s.planned,
            s.trained_accuracy().pct(),
            pruned.pct(),
            s.accuracy().pct()
        );
    }
    md
}
