//! End-to-end pruning: a pruned model is an ordinary model file, and on the real
//! MNIST an MLP pruned by half by APoZ and fine-tuned keeps a sensible accuracy,
//! deciding on the validation split and measuring on the test set.

use std::collections::BTreeMap;

use net::{Init, Model, Schedule, TrainConfig};
use prune::pipeline::{Job, run};
use prune::strategy::Strategy;
use prune::{Amount, ConvDecision, Data, Plan};

#[test]
fn a_pruned_model_round_trips_through_the_model_file() -> anyhow::Result<()> {
    let m =
        Model::from_spec("conv6k3p1,relu,pool2,flatten,fc10,relu,fc3", [1, 6, 6], 3, Init::KaimingNormal, 2)?;
    let keep = vec![vec![true, false, true, true, false, true], (0..10).map(|j| j % 3 != 0).collect()];
    let small = prune::surgery::remove_neurons(&m, &keep)?;
    assert_eq!(prune::surgery::widths(&small)?, vec![4, 6]);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pruned.safetensors");
    net::save(&small, &path, &BTreeMap::new())?;
    let (back, _) = net::load(&path)?;
    assert_eq!(back, small);
    assert_eq!(back.spec(), "conv4k3p1,relu,pool2,flatten,fc6,relu,fc3");
    Ok(())
}

#[test]
#[ignore = "needs MNIST: run with cargo xtask test"]
fn mlp_pruned_by_half_with_apoz_and_finetuned_stays_accurate() -> anyhow::Result<()> {
    let mnist = mnist_io::Mnist::open(&actprune_tests::mnist_dir())?;
    let split = mnist_io::split(mnist.train.len(), 5000, 0);
    let mut model = Model::from_spec("mlp:784-200-200-10", [1, 28, 28], 10, Init::PyTorchDefault, 0)?;
    let cfg = TrainConfig {
        epochs: 1,
        lr: 0.05,
        momentum: 0.9,
        schedule: Schedule::Constant,
        ..TrainConfig::default()
    };
    net::train(&mut model, &mnist.train, &split.train, None, &cfg, &mut ())?;
    let before = net::evaluate(&model, &mnist.test, None, 256)?.accuracy;
    assert!(before > 0.95, "one epoch of SGD with momentum reaches > 95%: {before}");

    let apoz = prune::criteria::apoz::Apoz;
    let job = Job {
        criterion: &apoz,
        plan: Plan::new(Amount::Ratio(0.5)),
        rounds: 1,
        strategy: Strategy::Finetune,
        train: TrainConfig { epochs: 1, lr: 0.01, ..cfg },
        decision: ConvDecision::Majority,
        search_steps: 8,
    };
    let val = Data::new(&mnist.train, &split.validation);
    let out = run(&model, &mnist.train, &split.train, &val, &job)?;
    assert_eq!(prune::surgery::widths(&out.model)?, vec![100, 100]);
    assert!(out.model.macs() * 2 < model.macs() + 1000);
    let after = net::evaluate(&out.model, &mnist.test, None, 256)?.accuracy;
    assert!(after > before - 0.01, "pruned and fine-tuned: {after} vs {before}");
    Ok(())
}
