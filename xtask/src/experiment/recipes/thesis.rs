//! `thesis`: the thesis' own setting. An MLP with two hidden layers of W neurons each,
//! W = 100, 200, …, 1000, SGD (lr 0.01, momentum 0.05, batch 64); trained, pruned by
//! activation status, re-initialised at the pruned widths and retrained; evaluated on
//! the whole test set. The report sets the thesis' figures beside ours.
//!
//! Since version 2 it prunes by the activation-guided width search: each round removes
//! the neurons whose on/off decisions tell less about the label than their layer's mean
//! (mutual information), re-initialises and retrains at the new widths, and a layer
//! stops narrowing when validation accuracy would fall more than 0.5 points below the
//! trained model's (version 3: layers are then tried one at a time; version 2 stopped
//! every layer at the first rejected round).
//! Version 1 removed as many low-entropy neurons as a 0.5-point drop *before*
//! retraining allowed: that kept 98–99% of the neurons, so it found no smaller width.

use std::fmt::Write as _;

use super::{Plan, PlotKind, Recipe};
use crate::experiment::config::RunConfig;
use crate::experiment::report::Setting;

/// The recipe.
pub static RECIPE: Recipe = Recipe {
    name: "thesis",
    version: 3,
    about: "MLP 784-W-W-10 for W = 100…1000 (SGD lr 0.01, momentum 0.05, batch 64): trained, pruned by \
            activation status (rounds removing the neurons whose decisions carry less than their layer's \
            mean information about the label), re-initialised and retrained until validation accuracy \
            falls 0.5 points; accuracy and widths found per starting width, beside the thesis' figures.",
    expand,
    section,
    plots: &[PlotKind::AccuracyVsWidth, PlotKind::FiringRates],
};

/// The thesis' accuracy at 600 neurons per layer.
pub const THESIS_ACCURACY_600: f64 = 0.97;
/// The thesis' spread between the worst and the best width (fraction).
pub const THESIS_SPREAD: f64 = 0.065;
/// The thesis' seconds per training iteration (epoch).
pub const THESIS_SECONDS_PER_EPOCH: f64 = 25.99;

/// The hidden widths of the sweep.
pub fn widths(quick: bool) -> Vec<usize> {
    if quick { vec![100, 400, 700, 1000] } else { (100..=1000).step_by(100).collect() }
}

fn expand(plan: &Plan) -> Vec<RunConfig> {
    let (epochs, train_images, validation) = if plan.quick { (2, 10_000, 1000) } else { (10, 0, 5000) };
    let mut runs = Vec::new();
    for w in widths(plan.quick) {
        for &seed in &plan.seed_list() {
            runs.push(RunConfig {
                pretrain_epochs: epochs as f64,
                criterion: "mi".into(),
                schedule: "search:0.005:threshold:0".into(),
                strategy: "reinit".into(),
                retrain_epochs: epochs,
                train_images,
                validation,
                ..plan.thesis_mlp_run(&RECIPE, &[w, w], seed)
            });
        }
    }
    runs
}

fn section(settings: &[Setting]) -> String {
    let mut md = String::from("## Accuracy per width (ours) beside the thesis\n\n");
    md.push_str(
        "| width W | runs | trained | pruned, re-initialised, retrained | widths after pruning | neurons kept | s/epoch |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for s in settings {
        let after: Vec<String> = s.hidden_after().iter().map(|w| w.to_string()).collect();
        let _ = writeln!(
            md,
            "| {} | {}/{} | {} | {} | {} | {:.0}% | {:.2} |",
            s.config.hidden[0],
            s.runs.len(),
            s.planned,
            s.trained_accuracy().pct(),
            s.accuracy().pct(),
            after.join("-"),
            100.0 * (1.0 - s.fraction_removed().mean),
            s.epoch_seconds().mean
        );
    }
    let done: Vec<&Setting> = settings.iter().filter(|s| !s.runs.is_empty()).collect();
    let spread = |f: &dyn Fn(&Setting) -> f64| {
        let v: Vec<f64> = done.iter().map(|s| f(s)).collect();
        let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        if v.is_empty() { f64::NAN } else { max - min }
    };
    let spread_trained = spread(&|s| s.trained_accuracy().mean);
    let spread_final = spread(&|s| s.accuracy().mean);
    let at600 = done.iter().find(|s| s.config.hidden[0] == 600);
    let fmt_pct = |v: Option<f64>| v.map_or("not run".to_string(), |v| format!("{:.2}%", 100.0 * v));
    md.push_str("\n| figure | thesis | ours (trained) | ours (pruned + retrained) |\n|---|---|---|---|\n");
    let _ = writeln!(
        md,
        "| accuracy at 600 neurons per layer | {:.0}% | {} | {} |",
        100.0 * THESIS_ACCURACY_600,
        fmt_pct(at600.map(|s| s.trained_accuracy().mean)),
        fmt_pct(at600.map(|s| s.accuracy().mean))
    );
    let _ = writeln!(
        md,
        "| spread between worst and best width | {:.1}% | {:.2} points | {:.2} points |",
        100.0 * THESIS_SPREAD,
        100.0 * spread_trained,
        100.0 * spread_final
    );
    let _ = writeln!(
        md,
        "| seconds per training iteration (epoch) at 600 | {:.2} s | {} | |",
        THESIS_SECONDS_PER_EPOCH,
        at600.map_or("not run".to_string(), |s| format!("{:.2} s", s.epoch_seconds().mean))
    );
    md
}
