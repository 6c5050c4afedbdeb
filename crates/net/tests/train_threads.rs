//! Training on synthetic IDX data (written to a temporary folder): bit-identical
//! results for 1 and 2 threads, learning on an easy task, the step budget, and the
//! divergence error naming epoch, batch and learning rate.

use std::path::Path;

use mnist_io::Dataset;
use net::{Init, Model, NetError, TrainConfig, evaluate, train};

/// Writes an IDX image file (`n × rows × cols` bytes) and label file; the class is
/// drawn as a bright horizontal bar at row `2·label`, plus seeded noise.
fn write_idx(dir: &Path, name: &str, n: usize, rows: usize, cols: usize, classes: usize) -> Dataset {
    let mut images = Vec::from(0x0803u32.to_be_bytes());
    for d in [n, rows, cols] {
        images.extend((d as u32).to_be_bytes());
    }
    let mut labels = Vec::from(0x0801u32.to_be_bytes());
    labels.extend((n as u32).to_be_bytes());
    let mut state = 12345u32;
    for i in 0..n {
        let label = (i * 7 + i / 3) % classes;
        labels.push(label as u8);
        for y in 0..rows {
            for _ in 0..cols {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (state >> 26) as u8; // 0..64
                images.push(if y == 2 * label { 200 + noise / 2 } else { noise });
            }
        }
    }
    let (ip, lp) = (dir.join(format!("{name}-images")), dir.join(format!("{name}-labels")));
    std::fs::write(&ip, images).unwrap();
    std::fs::write(&lp, labels).unwrap();
    Dataset::open(&ip, &lp).unwrap()
}

fn run(threads: usize, ds: &Dataset, spec: &str) -> (Model, net::TrainReport) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut model = Model::from_spec(spec, [1, 12, 12], 5, Init::PyTorchDefault, 3).unwrap();
        let cfg =
            TrainConfig { epochs: 2, batch: 16, lr: 0.05, momentum: 0.9, seed: 9, ..TrainConfig::default() };
        let indices: Vec<u32> = (0..ds.len() as u32).collect();
        let report = train(&mut model, ds, &indices, Some(ds), &cfg, &mut ()).unwrap();
        (model, report)
    })
}

#[test]
fn one_and_two_threads_train_bit_identically_and_learn() {
    let dir = tempfile::tempdir().unwrap();
    let ds = write_idx(dir.path(), "train", 200, 12, 12, 5);
    for spec in ["conv4k3p1,relu,pool2,flatten,fc16,relu,fc5", "mlp:144-32-5"] {
        let (m1, r1) = run(1, &ds, spec);
        let (m2, r2) = run(2, &ds, spec);
        assert_eq!(m1.layers(), m2.layers(), "{spec}: weights differ between 1 and 2 threads");
        assert_eq!(r1.epochs[1].train_loss, r2.epochs[1].train_loss);
        assert_eq!(r1.batches, 2 * 13);
        let test = r1.epochs[1].test.as_ref().unwrap();
        println!("{spec}: loss {} accuracy {}", test.loss, test.accuracy);
        assert!(test.accuracy > 0.9, "{spec}: the bar task is easy, got {}", test.accuracy);
        assert_eq!(test.confusion.iter().sum::<u64>(), 200);
        // Evaluation runs batches in parallel: the same figures for 1 and 2 threads.
        let eval = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| evaluate(&m1, &ds, None, 7).unwrap())
        };
        let (e1, e2) = (eval(1), eval(2));
        assert_eq!((e1.loss, e1.accuracy, &e1.confusion), (e2.loss, e2.accuracy, &e2.confusion));
    }
}

#[test]
fn budget_stops_early_and_divergence_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ds = write_idx(dir.path(), "train", 100, 12, 12, 5);
    let indices: Vec<u32> = (0..100).collect();
    let mut model = Model::from_spec("mlp:144-8-5", [1, 12, 12], 5, Init::PyTorchDefault, 1).unwrap();
    let cfg = TrainConfig { epochs: 3, max_batches: Some(5), batch: 16, ..TrainConfig::default() };
    let report = train(&mut model, &ds, &indices, None, &cfg, &mut ()).unwrap();
    assert_eq!(report.batches, 5);
    assert_eq!(report.epochs.len(), 1);

    let cfg = TrainConfig { epochs: 3, batch: 16, lr: 1e30, momentum: 0.9, ..TrainConfig::default() };
    match train(&mut model, &ds, &indices, None, &cfg, &mut ()) {
        Err(NetError::Diverged { epoch, lr, .. }) => {
            assert_eq!(epoch, 1);
            assert_eq!(lr, 1e30);
        }
        other => panic!("expected divergence, got {other:?}"),
    }

    let wrong = Model::from_spec("mlp:784-5", [1, 28, 28], 5, Init::PyTorchDefault, 1).unwrap();
    assert!(matches!(evaluate(&wrong, &ds, None, 10), Err(NetError::Config(_))));
    assert!(matches!(evaluate(&model, &ds, Some(&[100]), 10), Err(NetError::Config(_))));
}

#[test]
fn evaluation_folds_the_centring_into_a_first_linear_layer_and_changes_no_prediction() {
    use mnist_io::{Normalize, write_batch};
    use net::{Workspace, fold_centring};
    let dir = tempfile::tempdir().unwrap();
    let ds = write_idx(dir.path(), "train", 120, 12, 12, 5);
    let (model, _) = run(1, &ds, "mlp:144-32-5");
    let norm = Normalize::default();
    let (folded, scaled) = fold_centring(&model, norm).expect("an MLP's first layer is a Linear");
    assert_eq!(scaled.mean, 0.0);
    assert_ne!(folded.layers(), model.layers(), "the first bias should absorb the centring");

    // The plain forward pass on centred images against the folded one on scaled images.
    let indices: Vec<u32> = (0..120).collect();
    let (mut centred, mut uncentred, mut labels) = (vec![0.0; 120 * 144], vec![0.0; 120 * 144], vec![0; 120]);
    write_batch(&ds, &indices, norm, &mut centred, &mut labels);
    write_batch(&ds, &indices, scaled, &mut uncentred, &mut labels);
    let (mut ws1, mut ws2) = (Workspace::default(), Workspace::default());
    let plain = model.forward(&centred, 120, &mut ws1).unwrap().to_vec();
    let fold = folded.forward(&uncentred, 120, &mut ws2).unwrap();
    for (p, f) in plain.iter().zip(fold) {
        assert!((p - f).abs() <= 1e-5 * p.abs().max(1.0), "logit {p} became {f}");
    }
    // `evaluate` runs the folded model: the same predictions as the plain logits.
    let eval = evaluate(&model, &ds, None, 32).unwrap();
    let argmax = |row: &[f32]| (0..row.len()).fold(0, |best, k| if row[k] > row[best] { k } else { best });
    let correct = plain.chunks_exact(5).zip(&labels).filter(|(row, l)| argmax(row) == **l as usize).count();
    assert_eq!(eval.accuracy, correct as f64 / 120.0);

    // A convolution first: nothing to fold.
    let (lenet, _) = run(1, &ds, "conv4k3p1,relu,pool2,flatten,fc16,relu,fc5");
    assert!(fold_centring(&lenet, norm).is_none());
}
