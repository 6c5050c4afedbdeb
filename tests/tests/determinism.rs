//! Determinism across thread counts: the same seed trains LeNet-5 and an MLP to the
//! same weights, bit for bit, in a 1-thread and a 2-thread rayon pool; and it gives
//! the same pruning decisions and the same pruned model file, byte for byte.
//! Synthetic IDX data (written to a temporary folder), so these run in CI without MNIST.

mod synthetic;

use std::collections::BTreeMap;

use mnist_io::{Mnist, split};
use net::{Init, Model, TrainConfig};
use prune::pipeline::{Job, run};
use prune::strategy::Strategy;
use prune::{Amount, Context, ConvDecision, Data, Plan};

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

/// Every parameter of `model` as raw bits, layer by layer, weight before bias.
fn bits(model: &Model) -> Vec<u32> {
    model
        .layers()
        .iter()
        .filter_map(|l| l.params())
        .flat_map(|(w, b)| w.iter().chain(b))
        .map(|x| x.to_bits())
        .collect()
}

fn data() -> (tempfile::TempDir, Mnist) {
    let dir = tempfile::tempdir().unwrap();
    synthetic::write_mnist(dir.path(), 600, 100, 28, 28);
    let mnist = Mnist::open(dir.path()).unwrap();
    (dir, mnist)
}

/// Trains `spec` for `steps` batches of `batch` in a pool of `threads` threads.
fn train(mnist: &Mnist, spec: &str, threads: usize, steps: usize, batch: usize) -> Model {
    let mut model = Model::from_spec(spec, [1, 28, 28], 10, Init::KaimingNormal, 7).unwrap();
    let indices: Vec<u32> = (0..mnist.train.len() as u32).collect();
    let cfg = TrainConfig {
        epochs: 100,
        max_batches: Some(steps),
        batch,
        lr: 0.02,
        momentum: 0.9,
        weight_decay: 1e-4,
        seed: 11,
        ..TrainConfig::default()
    };
    pool(threads).install(|| net::train(&mut model, &mnist.train, &indices, None, &cfg, &mut ()).unwrap());
    model
}

fn assert_bit_identical_training(spec: &str, steps: usize, batch: usize) {
    let (_dir, mnist) = data();
    let init = bits(&Model::from_spec(spec, [1, 28, 28], 10, Init::KaimingNormal, 7).unwrap());
    let one = train(&mnist, spec, 1, steps, batch);
    let two = train(&mnist, spec, 2, steps, batch);
    let (a, b) = (bits(&one), bits(&two));
    assert_eq!(a.len(), b.len());
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(differing, 0, "{spec}: {differing} of {} parameters differ between 1 and 2 threads", a.len());
    // Not vacuous: training moved (almost) every weight away from its initial value.
    let moved = a.iter().zip(&init).filter(|(x, y)| x != y).count();
    assert!(moved > a.len() / 2, "{spec}: only {moved} of {} parameters changed", a.len());
}

#[test]
fn lenet5_training_is_bit_identical_on_1_and_2_threads() {
    assert_bit_identical_training("lenet5", 200, 8);
}

#[test]
fn mlp_training_is_bit_identical_on_1_and_2_threads() {
    assert_bit_identical_training("mlp:784-100-100-10", 300, 16);
}

/// Records, scores and prunes a trained model, then fine-tunes it, in a pool of
/// `threads`; returns the keep masks, the pruned widths and the saved file's bytes.
fn prune_once(
    mnist: &Mnist,
    model: &Model,
    threads: usize,
    criterion: &str,
) -> (Vec<Vec<bool>>, Vec<usize>, Vec<u8>) {
    let parts = split(mnist.train.len(), 200, 5);
    let val = Data::new(&mnist.train, &parts.validation);
    pool(threads).install(|| {
        let criterion = prune::criteria::by_name(criterion, 3).unwrap();
        let status = prune::record(model, &val, ConvDecision::Majority).unwrap();
        let cx = Context { status: Some(&status), model: Some(model), data: Some(val) };
        let plan = Plan::new(Amount::Ratio(0.5));
        let masks = plan.masks(&criterion.scores(&cx).unwrap()).unwrap();
        let job = Job {
            criterion: criterion.as_ref(),
            plan,
            rounds: 2,
            strategy: Strategy::Finetune,
            train: TrainConfig {
                epochs: 1,
                max_batches: Some(40),
                batch: 16,
                seed: 9,
                ..TrainConfig::default()
            },
            decision: ConvDecision::Majority,
            search_steps: 4,
        };
        let out = run(model, &mnist.train, &parts.train, &val, &job).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pruned.safetensors");
        let meta = BTreeMap::from([
            ("criterion".to_string(), "x".to_string()),
            ("seed".to_string(), "3".to_string()),
        ]);
        net::save(&out.model, &path, &meta).unwrap();
        (masks, prune::surgery::widths(&out.model).unwrap(), std::fs::read(&path).unwrap())
    })
}

#[test]
fn same_seed_gives_the_same_pruning_decisions_and_the_same_model_file() {
    let (_dir, mnist) = data();
    for (spec, criterion) in [("mlp:784-64-32-10", "entropy"), ("lenet5", "apoz")] {
        let model = train(&mnist, spec, 2, 60, 16);
        let (masks1, widths1, file1) = prune_once(&mnist, &model, 1, criterion);
        let (masks2, widths2, file2) = prune_once(&mnist, &model, 2, criterion);
        let (masks3, _, file3) = prune_once(&mnist, &model, 2, criterion);
        assert_eq!(masks1, masks2, "{spec}: pruning decisions differ between 1 and 2 threads");
        assert_eq!(masks2, masks3, "{spec}: pruning decisions differ between two runs");
        assert_eq!(widths1, widths2);
        assert!(masks1.iter().flatten().any(|&k| !k), "{spec}: nothing was pruned");
        assert_same_file(&file1, &file2, &format!("{spec}, 1 and 2 threads"));
        assert_same_file(&file2, &file3, &format!("{spec}, two runs"));
    }
}

/// Byte equality, naming the first differing byte and whether it lies in the header.
fn assert_same_file(a: &[u8], b: &[u8], what: &str) {
    let header = 8 + u64::from_le_bytes(a[..8].try_into().unwrap()) as usize;
    if let Some(at) = a.iter().zip(b).position(|(x, y)| x != y) {
        let region = if at < header { "header" } else { "tensor data" };
        panic!(
            "{what}: model files differ from byte {at} ({region}; the header is {header} bytes): {:?} vs {:?}",
            String::from_utf8_lossy(&a[at.saturating_sub(20)..(at + 40).min(header)]),
            String::from_utf8_lossy(&b[at.saturating_sub(20)..(at + 40).min(header)]),
        );
    }
    assert_eq!(a.len(), b.len(), "{what}: model files differ in length");
}
