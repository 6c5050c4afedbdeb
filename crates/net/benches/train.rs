//! Training and inference benchmark on the real MNIST: seconds per training epoch
//! (60,000 images, batch 64, SGD with momentum), training images/s, the inference time
//! of the 10,000 test images at batch 1000, and the fraction of this machine's measured
//! GEMM peak (a 1024³ `kernels::gemm` at the same thread count) that the epoch reaches.
//!
//! Usage: `cargo bench -p net --bench train -- [--json] [--quick] [--layers]
//! [--model lenet5|mlp]... [--threads N]...` (or `cargo xtask bench train`). With
//! `--layers`, each model and thread count then also times every layer's kernels over
//! training steps (forward, and backward with the fused SGD step) and prints their
//! microseconds per step and GFLOP/s, how much of a Linear's backward its input
//! gradient took ("of which dX"; the rest is its weight gradient with the fused SGD
//! step), and what the steps spent outside them (the loss, the non-fused SGD updates,
//! waiting). The data folder is
//! `ACTPRUNE_MNIST_DIR` or `data/mnist`. Figures are medians of repeated runs (the
//! machine is shared: other processes add noise); `--quick` trains 200 batches per run
//! and scales to an epoch. `epoch CPU s` is the process's CPU time for the epoch (all
//! threads): on a busy machine, the one-thread figure is what an idle core would take.

use std::path::PathBuf;
use std::time::Instant;

use kernels::{Epilogue, MatMut, MatRef, Parallelism};
use mnist_io::{Dataset, Normalize, write_batch};
use net::{Init, Model, Sgd, TrainConfig, Workspace, evaluate, train, training_input};

/// Times each layer of `model` over `steps` training steps at batch 64 (after 20 untimed
/// ones), and prints a row per layer with kernels: forward and backward microseconds
/// per step and GFLOP/s (flops: `2·MACs` per image forward, twice that backward, once
/// for the first layer with parameters, which needs no input gradient), then the rest
/// of the step.
fn layer_breakdown(
    model: &mut Model,
    data: &Dataset,
    (lr, momentum): (f32, f32),
    steps: usize,
    threads: usize,
    json: bool,
) {
    let batch = 64;
    let mut sgd = Sgd::new(lr, momentum, 0.0, false);
    let mut ws = Workspace::default();
    // Fed as `train` feeds it (an MLP's centring folded into its first layer).
    let (norm, offset) = training_input(model, Normalize::default());
    ws.fold_input_offset(offset);
    let (mut images, mut labels) = (vec![0.0f32; batch * data.image_len()], vec![0u32; batch]);
    let indices: Vec<u32> = (0..data.len() as u32).collect();
    let mut step_time = std::time::Duration::ZERO;
    for (s, chunk) in indices.chunks_exact(batch).cycle().take(steps + 20).enumerate() {
        write_batch(data, chunk, norm, &mut images, &mut labels);
        if s == 20 {
            ws.time_layers(true);
        }
        let t = Instant::now();
        sgd.forward_backward_step(model, &images, &labels, batch, &mut ws).unwrap();
        if s >= 20 {
            step_time += t.elapsed();
        }
    }
    let first = first_with_macs(model);
    let per_step = |d: std::time::Duration| d.as_secs_f64() / steps as f64;
    let mut kernels = 0.0;
    for (i, t) in ws.layer_times().iter().enumerate() {
        if t.forward_passes == 0 && t.backward_passes == 0 {
            continue;
        }
        let (fwd, bwd, bwd_dx) = (per_step(t.forward), per_step(t.backward), per_step(t.backward_input));
        kernels += fwd + bwd;
        let macs = (model.layer_macs(i) * batch) as f64;
        let bwd_macs = if Some(i) == first { macs } else { 2.0 * macs };
        let gflops = |m: f64, secs: f64| if secs > 0.0 && m > 0.0 { 2.0 * m / secs / 1e9 } else { 0.0 };
        let kind = model.layers()[i].kind();
        if json {
            println!(
                "{{\"layer\":{i},\"kind\":\"{kind}\",\"threads\":{threads},\"forward_us\":{:.2},\"backward_us\":{:.2},\"backward_input_us\":{:.2},\"forward_gflops\":{:.2},\"backward_gflops\":{:.2}}}",
                fwd * 1e6,
                bwd * 1e6,
                bwd_dx * 1e6,
                gflops(macs, fwd),
                gflops(bwd_macs, bwd)
            );
        } else {
            println!(
                "  {i:>3} {kind:<8} {:>12.1} {:>12.1} {:>12} {:>10.1} {:>10.1}",
                fwd * 1e6,
                bwd * 1e6,
                if bwd_dx > 0.0 { format!("{:.1}", bwd_dx * 1e6) } else { "-".into() },
                gflops(macs, fwd),
                gflops(bwd_macs, bwd)
            );
        }
    }
    let step = per_step(step_time);
    if json {
        println!(
            "{{\"layer\":\"rest\",\"threads\":{threads},\"step_us\":{:.2},\"rest_us\":{:.2}}}",
            step * 1e6,
            (step - kernels) * 1e6
        );
    } else {
        println!(
            "  step {:.1} µs, of which outside the layers' kernels {:.1} µs",
            step * 1e6,
            (step - kernels) * 1e6
        );
    }
}

/// The first layer that multiplies (the one whose backward needs no input gradient).
fn first_with_macs(model: &Model) -> Option<usize> {
    (0..model.layers().len()).find(|&i| model.layer_macs(i) > 0)
}

/// CPU seconds (user + system, all threads) this process has used, from
/// `/proc/self/stat` (clock ticks of 1/100 s); 0 where that file does not exist. On a
/// busy machine the CPU time of a one-thread run is what the run takes on an idle core.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// GFLOP/s of a 1024³ GEMM in the current pool (median of 5).
fn gemm_peak() -> f64 {
    let n = 1024;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let b = a.clone();
    let mut c = vec![0.0f32; n * n];
    let mut samples = Vec::new();
    for _ in 0..6 {
        let t = Instant::now();
        let (am, bm) = (MatRef::row_major(&a, n, n).unwrap(), MatRef::row_major(&b, n, n).unwrap());
        let mut cm = MatMut::row_major(&mut c, n, n).unwrap();
        kernels::gemm(1.0, am, bm, 0.0, &mut cm, &Epilogue::NONE, Parallelism::Threads).unwrap();
        samples.push(2.0 * (n * n * n) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    median(samples[1..].to_vec())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let layers = args.iter().any(|a| a == "--layers");
    let values = |flag: &str| -> Vec<String> {
        args.windows(2).filter(|w| w[0] == flag).map(|w| w[1].clone()).collect()
    };
    let mut models = values("--model");
    if models.is_empty() {
        models = vec!["lenet5".into(), "mlp".into()];
    }
    let mut threads: Vec<usize> = values("--threads").iter().filter_map(|t| t.parse().ok()).collect();
    if threads.is_empty() {
        threads = vec![1, 2];
    }
    let dir = std::env::var_os("ACTPRUNE_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist"));
    let data = mnist_io::Mnist::open(&dir)
        .and_then(mnist_io::Mnist::into_resident)
        .unwrap_or_else(|e| panic!("MNIST in {}: {e}", dir.display()));
    let indices: Vec<u32> = (0..data.train.len() as u32).collect();
    let (reps, max_batches) = if quick { (1, Some(200)) } else { (3, None) };
    if !json {
        println!(
            "{:<8} {:>7} {:>11} {:>11} {:>10} {:>13} {:>11} {:>9}",
            "model", "threads", "epoch s", "epoch CPU s", "img/s", "inference s", "GEMM peak", "of peak"
        );
    }
    for name in &models {
        let (spec, lr, momentum) = match name.as_str() {
            "lenet5" => ("lenet5", 0.05, 0.9),
            "mlp" => ("mlp:784-600-600-10", 0.01, 0.05),
            other => panic!("unknown --model {other} (lenet5 or mlp)"),
        };
        for &t in &threads {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            pool.install(|| {
                let mut model = Model::from_spec(spec, [1, 28, 28], 10, Init::PyTorchDefault, 0).unwrap();
                let cfg = TrainConfig { epochs: 1, max_batches, batch: 64, lr, momentum, ..TrainConfig::default() };
                let (mut epoch, mut cpu) = (Vec::new(), Vec::new());
                for _ in 0..reps {
                    let c0 = cpu_seconds();
                    let r = train(&mut model, &data.train, &indices, None, &cfg, &mut ()).unwrap();
                    let e = &r.epochs[0];
                    // Scale a partial (quick) epoch to the full 60,000 images.
                    let scale = data.train.len() as f64 / (e.images_per_second * e.seconds);
                    epoch.push(e.seconds * scale);
                    cpu.push((cpu_seconds() - c0) * scale);
                }
                let epoch_s = median(epoch);
                let cpu_s = median(cpu);
                let mut infer = Vec::new();
                for _ in 0..if quick { 3 } else { 7 } {
                    infer.push(evaluate(&model, &data.test, None, 1000).unwrap().seconds);
                }
                let infer_s = median(infer);
                let peak = gemm_peak();
                let first = first_with_macs(&model).map_or(0, |i| model.layer_macs(i));
                let flops = 2.0 * (3 * model.macs() - first) as f64 * data.train.len() as f64;
                let achieved = flops / epoch_s / 1e9;
                let images_per_s = data.train.len() as f64 / epoch_s;
                if json {
                    println!(
                        "{{\"model\":\"{name}\",\"threads\":{t},\"epoch_seconds\":{epoch_s:.4},\"epoch_cpu_seconds\":{cpu_s:.3},\"images_per_second\":{images_per_s:.1},\"inference_seconds\":{infer_s:.5},\"gemm_peak_gflops\":{peak:.2},\"epoch_gflops\":{achieved:.2},\"fraction_of_peak\":{:.4}}}",
                        achieved / peak
                    );
                } else {
                    println!(
                        "{name:<8} {t:>7} {epoch_s:>11.3} {cpu_s:>11.3} {images_per_s:>10.0} {infer_s:>13.4} {peak:>8.1} GF {:>8.1}%",
                        100.0 * achieved / peak
                    );
                }
                if layers {
                    if !json {
                        println!(
                            "  {:>3} {:<8} {:>12} {:>12} {:>12} {:>10} {:>10}",
                            "#", "layer", "fwd µs/step", "bwd µs/step", "of which dX", "fwd GF/s", "bwd GF/s"
                        );
                    }
                    let steps = if quick { 200 } else { 1000 };
                    layer_breakdown(&mut model, &data.train, (lr, momentum), steps, t, json);
                }
            });
        }
    }
}
