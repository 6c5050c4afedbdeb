//! End-to-end training on the real MNIST (ignored by plain `cargo test`; `cargo xtask
//! test` runs it with the data): one epoch of the MLP reaches a sensible accuracy, and
//! a model trained and saved by `cargo xtask train` reloads with PyTorch's state_dict
//! names, shapes and our metadata.

use std::process::Command;

use actprune_tests::{mnist_dir, project_root};
use net::{Init, Model, TrainConfig, evaluate, train};

#[test]
#[ignore = "needs MNIST: run with cargo xtask test"]
fn mlp_one_epoch_reaches_93_percent() -> anyhow::Result<()> {
    // Resident, as `cargo xtask train` has it: the shuffled batches read a copy on huge pages.
    let data = mnist_io::Mnist::open(&mnist_dir())?.into_resident()?;
    let mut model = Model::from_spec("mlp:784-128-10", [1, 28, 28], 10, Init::PyTorchDefault, 7)?;
    let cfg =
        TrainConfig { epochs: 1, batch: 64, lr: 0.05, momentum: 0.9, seed: 7, ..TrainConfig::default() };
    let indices: Vec<u32> = (0..data.train.len() as u32).collect();
    let report = train(&mut model, &data.train, &indices, Some(&data.test), &cfg, &mut ())?;
    let test = report.epochs[0].test.as_ref().expect("evaluated after the epoch");
    println!("MLP 784-128-10, 1 epoch: test accuracy {:.4}, loss {:.4}", test.accuracy, test.loss);
    assert!(test.accuracy >= 0.93, "accuracy {}", test.accuracy);
    assert_eq!(test.images, 10_000);
    // The confusion matrix agrees with the accuracy.
    let diag: u64 = (0..10).map(|k| test.confusion[k * 10 + k]).sum();
    assert_eq!(diag as f64 / 10_000.0, test.accuracy);
    // Evaluating again gives the same figures.
    let again = evaluate(&model, &data.test, None, 1000)?;
    assert_eq!(again.confusion, test.confusion);
    Ok(())
}

#[test]
#[ignore = "needs MNIST: run with cargo xtask test"]
fn cli_trained_model_reloads_with_state_dict_names_and_metadata() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("lenet.safetensors");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(project_root())
        .args(["run", "--release", "-q", "-p", "xtask", "--", "train", "--model", "lenet5", "--epochs", "1"])
        .args(["--max-batches", "100", "--lr", "0.05", "--momentum", "0.9", "--seed", "3", "--threads", "2"])
        .args(["--validation", "5000"])
        .arg("--data")
        .arg(mnist_dir())
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .output()?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout)?;
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))?;
    for key in ["test_accuracy", "test_loss", "epoch_seconds", "images_per_second", "params", "macs"] {
        assert!(json.get(key).is_some(), "--json lacks {key}: {json}");
    }
    assert_eq!(json["params"], 61_706);
    assert!(json["test_accuracy"].as_f64().unwrap() > 0.8, "{json}");

    // The file, read as plain safetensors: PyTorch's names and shapes, our metadata.
    let bytes = std::fs::read(&out)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    assert_eq!(meta["spec"], "conv6k5p2,relu,pool2,conv16k5,relu,pool2,flatten,fc120,relu,fc84,relu,fc10");
    assert_eq!(meta["input_shape"], "1,28,28");
    assert_eq!(meta["num_classes"], "10");
    assert_eq!(meta["format"], "pt");
    // The held-out split, for `prune` and `inspect` to find again.
    assert_eq!((meta["validation"].as_str(), meta["split_seed"].as_str()), ("5000", "3"));
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let shapes = [
        ("0.weight", vec![6, 1, 5, 5]),
        ("0.bias", vec![6]),
        ("3.weight", vec![16, 6, 5, 5]),
        ("3.bias", vec![16]),
        ("7.weight", vec![120, 400]),
        ("7.bias", vec![120]),
        ("9.weight", vec![84, 120]),
        ("9.bias", vec![84]),
        ("11.weight", vec![10, 84]),
        ("11.bias", vec![10]),
    ];
    assert_eq!(st.names().len(), shapes.len());
    for (name, shape) in &shapes {
        let t = st.tensor(name)?;
        assert_eq!(t.shape(), shape.as_slice(), "{name}");
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    }

    // And through net: the same accuracy as the CLI reported.
    let (model, extra) = net::load(&out)?;
    assert_eq!(extra["seed"], "3");
    let data = mnist_io::Mnist::open(&mnist_dir())?;
    let e = evaluate(&model, &data.test, None, 1000)?;
    assert_eq!(e.accuracy, json["test_accuracy"].as_f64().unwrap());
    Ok(())
}
