//! Fixed workloads for instruction-count profiling (`valgrind --tool=callgrind`) and
//! quick wall-clock checks: the same work on every run, no warm-up, no timing logic
//! beyond one line of output.
//!
//! Usage: `cargo run --release -p net --example profile -- <workload> [count]`, with
//! the MNIST IDX files in `ACTPRUNE_MNIST_DIR` (default `data/mnist`). Workloads:
//! - `lenet-train N`: N batches of 64 of LeNet-5 training (SGD, momentum 0.9);
//! - `lenet-infer N`: `evaluate` LeNet-5 on the first N test images, batch 1000;
//! - `pruned-infer N`: the same for a pruned LeNet (conv 2/4 channels, fc 30/20);
//! - `mlp-train N`: N batches of 64 of MLP 784-100-100-10 training.
//!
//! The thread count is the rayon default (`RAYON_NUM_THREADS`).

use std::path::PathBuf;
use std::time::Instant;

use net::{Init, Model, TrainConfig, evaluate, train};

const PRUNED: &str = "conv2k5p2,relu,pool2,conv4k5,relu,pool2,flatten,fc30,relu,fc20,relu,fc10";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let workload = args.first().map_or("lenet-train", String::as_str);
    let count: usize = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(100);
    let dir = std::env::var_os("ACTPRUNE_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist"));
    let data = mnist_io::Mnist::open(&dir).unwrap_or_else(|e| panic!("MNIST in {}: {e}", dir.display()));
    let model = |spec: &str| Model::from_spec(spec, [1, 28, 28], 10, Init::PyTorchDefault, 0).unwrap();
    let start = Instant::now();
    match workload {
        "lenet-train" | "mlp-train" => {
            let (spec, lr, momentum) = if workload == "lenet-train" {
                ("lenet5", 0.05, 0.9)
            } else {
                ("mlp:784-100-100-10", 0.01, 0.05)
            };
            let mut m = model(spec);
            let indices: Vec<u32> = (0..data.train.len() as u32).collect();
            let cfg = TrainConfig {
                epochs: 1,
                max_batches: Some(count),
                batch: 64,
                lr,
                momentum,
                ..TrainConfig::default()
            };
            let r = train(&mut m, &data.train, &indices, None, &cfg, &mut ()).unwrap();
            let e = &r.epochs[0];
            println!(
                "{workload}: {} batches, loss {:.6}, accuracy {:.4}, {:.3} s",
                e.batches,
                e.train_loss,
                e.train_accuracy,
                start.elapsed().as_secs_f64()
            );
        }
        "lenet-infer" | "pruned-infer" => {
            let m = model(if workload == "lenet-infer" { "lenet5" } else { PRUNED });
            let indices: Vec<u32> = (0..count.min(data.test.len()) as u32).collect();
            let e = evaluate(&m, &data.test, Some(&indices), 1000).unwrap();
            println!(
                "{workload}: {} images, loss {:.6}, accuracy {:.4}, {:.4} s",
                e.images, e.loss, e.accuracy, e.seconds
            );
        }
        other => panic!("unknown workload {other}"),
    }
}
