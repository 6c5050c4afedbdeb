//! The activation-guided width search on real MNIST, for the README figures:
//! `cargo run -p prune --release --example width_search -- DIR [SPEC] [CRITERION] [AMOUNT] [EPOCHS] [LR]
//! [STRATEGY] [DELTA]`. Environment: `WIDE_CACHE=FILE` saves the trained wide model there, or loads it
//! when present; `VALIDATION=N` holds out N training images (default 5,000); `WEIGHT_DECAY=X` trains
//! every model with that L2 weight decay (default 0); `SEED=S` seeds the split, the wide model and its
//! training (default 0); `REFINE=N` lets a layer's step be halved N times after rejected rounds.
//!
//! Trains the wide model on the training split minus the validation images, then
//! repeatedly keeps each layer's significant neurons (dropping AMOUNT per round by
//! CRITERION), retrains EPOCHS epochs, and narrows each layer until validation accuracy
//! falls more than 0.3 points below the wide model's. Prints one line per round and the test
//! accuracy of the wide and of the chosen model (the test set is only measured).

use std::error::Error;
use std::path::PathBuf;

use net::{Init, Model, Schedule, TrainConfig};
use prune::strategy::Strategy;
use prune::width::{Guided, activation_guided};
use prune::{Amount, ConvDecision, Data, Plan};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir =
        PathBuf::from(args.first().ok_or("usage: width_search DIR [SPEC] [CRITERION] [AMOUNT] [EPOCHS]")?);
    let spec = args.get(1).map_or("mlp:784-600-600-10", String::as_str);
    let criterion = prune::criteria::by_name(args.get(2).map_or("apoz", String::as_str), 0)?;
    // A fraction per round, `global:R` (R of all hidden neurons, layers compared by
    // their normalised scores), `maxdrop:D` (as much as stays within D before retraining)
    // or `threshold:T` (below the layer's mean − T·σ).
    let amount = match args.get(3).map(String::as_str) {
        None => Amount::Ratio(0.3),
        Some(s) if s.starts_with("maxdrop:") => Amount::MaxDrop(s["maxdrop:".len()..].parse()?),
        Some(s) if s.starts_with("threshold:") => Amount::Threshold(s["threshold:".len()..].parse()?),
        Some(s) if s.starts_with("global:") => Amount::Global(s["global:".len()..].parse()?),
        Some(s) => Amount::Ratio(s.parse()?),
    };
    let epochs: usize = args.get(4).map_or(Ok(3), |s| s.parse())?;
    let lr: f32 = args.get(5).map_or(Ok(0.01), |s| s.parse())?;
    let strategy = match args.get(6).map_or("finetune", String::as_str) {
        "finetune" => Strategy::Finetune,
        "reinit" => Strategy::Reinit { init: Init::PyTorchDefault, seed: 1 },
        other => return Err(format!("strategy {other}: expected finetune or reinit").into()),
    };
    let cache = std::env::var_os("WIDE_CACHE").map(PathBuf::from);
    let mnist = mnist_io::Mnist::open(&dir)?.into_resident()?;
    let env = |name: &str| std::env::var(name).ok();
    let weight_decay: f32 = env("WEIGHT_DECAY").map_or(Ok(0.0), |s| s.parse())?;
    let seed: u64 = env("SEED").map_or(Ok(0), |s| s.parse())?;
    let validation: usize = env("VALIDATION").map_or(Ok(5000), |s| s.parse())?;
    let split = mnist_io::split(mnist.train.len(), validation, seed);
    let val = Data::new(&mnist.train, &split.validation);
    let mut wide = Model::from_spec(spec, [1, 28, 28], 10, Init::PyTorchDefault, seed)?;
    let cfg = TrainConfig {
        epochs: 10,
        lr: 0.05,
        momentum: 0.9,
        schedule: Schedule::Cosine,
        weight_decay,
        seed,
        ..TrainConfig::default()
    };
    match &cache {
        Some(path) if path.exists() => wide = net::load(path)?.0,
        _ => {
            net::train(&mut wide, &mnist.train, &split.train, None, &cfg, &mut ())?;
            if let Some(path) = &cache {
                net::save(&wide, path, &Default::default())?;
            }
        }
    }
    let wide_test = net::evaluate(&wide, &mnist.test, None, 256)?.accuracy;
    let g = Guided {
        criterion: criterion.as_ref(),
        plan: Plan::new(amount),
        delta: args.get(7).map_or(Ok(0.003), |s| s.parse())?,
        max_rounds: 12,
        strategy,
        train: TrainConfig { epochs, lr, schedule: Schedule::Cosine, ..cfg },
        decision: ConvDecision::AboveMean,
        refinements: env("REFINE").map_or(Ok(0), |s| s.parse())?,
    };
    let report = activation_guided(&wide, &mnist.train, &split.train, &val, &g)?;
    let total: usize = report.rounds[0].widths.iter().sum();
    for (i, r) in report.rounds.iter().enumerate() {
        let kept: usize = r.widths.iter().sum();
        println!(
            "round {i}: widths {:?} ({:.1}% of hidden neurons), {} params, validation {:.2}%{}",
            r.widths,
            100.0 * kept as f64 / total as f64,
            r.params,
            100.0 * r.accuracy,
            if i == report.best {
                "  <- chosen"
            } else if !r.accepted {
                "  (rejected)"
            } else {
                ""
            }
        );
    }
    let chosen_test = net::evaluate(&report.model, &mnist.test, None, 256)?.accuracy;
    println!(
        "{} by {}: test accuracy wide {:.2}% -> chosen {:.2}% ({:+.2} points)",
        spec,
        criterion.name(),
        100.0 * wide_test,
        100.0 * chosen_test,
        100.0 * (chosen_test - wide_test)
    );
    Ok(())
}
