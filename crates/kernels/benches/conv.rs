//! Convolution benchmark: GFLOP/s (median of repeated samples) of LeNet's two
//! convolutions at batch 64, forward and backward, 1 and 2 threads. Three columns:
//! ours as `conv2d_forward`/`conv2d_backward` choose (`auto`), ours forced onto
//! im2col + our GEMM (`lowered`), and the peer: our im2col (one thread) + the `gemm`
//! crate (0.19, x86-v4) over the whole batch's `cols`.
//!
//! Flops: forward `2·N·O·OH·OW·C·KH·KW`; the weight gradient the same again, and the
//! input gradient (conv2 only; conv1's input gradient is never needed) the same again.
//! The peer is favoured: its forward output stays `O × N·OH·OW` (not scattered back to
//! NCHW) and its `dY` is handed to it already in that layout.
//!
//! The `_pool` cases are the forward followed by a 2 × 2 max pooling with argmax, as
//! LeNet-5 runs them: `auto` is `conv2d_forward_pooled` (pooled in the tile), `lowered`
//! im2col + GEMM then the pooling pass; the flops counted are the convolution's, and
//! the peer's column is its plain forward (it pools nothing).
//!
//! Usage: `cargo bench -p kernels --bench conv -- [--json] [--quick] [--cpu-time]
//! [--case NAME]... [--threads N]... [--only auto|lowered|gemm]` (or `cargo xtask bench
//! conv`). `--cpu-time` times one-thread runs by the thread's CPU time rather than wall
//! time, steadier on a busy machine. `--json` prints one object per line:
//! `{"case":"conv1_fwd","threads":1,"gflops":…,"lowered":…,"peers":{"gemm":…}}`, after
//! one `{"case":"fma_peak","threads":…,"gflops":…}` per thread count: the machine's FMA
//! ceiling (registers only, `timing::fma_peak`), of which the table's last column is
//! **auto**'s fraction.

use std::hint::black_box;
use std::time::Duration;

use kernels::conv::{
    ConvPath, col2im, conv2d_backward_with, conv2d_forward_pooled, conv2d_forward_with, im2col,
};
use kernels::{ConvGeometry, Parallelism};
use timing::{fill, fma_peak, median, sample};

mod timing;

/// One benchmark case: a layer and a direction.
struct Case {
    name: &'static str,
    g: ConvGeometry,
    backward: bool,
    /// Backward also computes the input gradient.
    grad_input: bool,
    /// Forward followed by a 2 × 2 max pooling with its argmax (as LeNet-5 trains):
    /// `auto` runs `conv2d_forward_pooled`, `lowered` the two passes.
    pooled: bool,
}

const CONV1: ConvGeometry =
    ConvGeometry { batch: 64, in_c: 1, in_h: 28, in_w: 28, out_c: 6, kh: 5, kw: 5, stride: 1, pad: 2 };
const CONV2: ConvGeometry =
    ConvGeometry { batch: 64, in_c: 6, in_h: 14, in_w: 14, out_c: 16, kh: 5, kw: 5, stride: 1, pad: 0 };

const CASES: &[Case] = &[
    Case { name: "conv1_fwd", g: CONV1, backward: false, grad_input: false, pooled: false },
    Case { name: "conv1_fwd_pool", g: CONV1, backward: false, grad_input: false, pooled: true },
    Case { name: "conv1_bwd", g: CONV1, backward: true, grad_input: false, pooled: false },
    Case { name: "conv2_fwd", g: CONV2, backward: false, grad_input: false, pooled: false },
    Case { name: "conv2_fwd_pool", g: CONV2, backward: false, grad_input: false, pooled: true },
    Case { name: "conv2_bwd", g: CONV2, backward: true, grad_input: true, pooled: false },
];

struct Options {
    json: bool,
    quick: bool,
    cases: Vec<String>,
    threads: Vec<usize>,
    /// Time only this runner (`auto`, `lowered` or `gemm`), for profiling.
    only: Option<String>,
    /// Time one-thread runs by the thread's CPU time (steadier on a busy machine).
    cpu_time: bool,
}

fn parse_args() -> Options {
    let mut opts = Options {
        json: false,
        quick: false,
        cases: Vec::new(),
        threads: Vec::new(),
        only: None,
        cpu_time: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => opts.json = true,
            "--quick" => opts.quick = true,
            "--cpu-time" => opts.cpu_time = true,
            "--case" => opts.cases.push(args.next().expect("--case needs a name")),
            "--only" => opts.only = Some(args.next().expect("--only needs auto, lowered or gemm")),
            "--threads" => {
                opts.threads.push(args.next().and_then(|t| t.parse().ok()).expect("--threads needs a number"))
            }
            // `cargo bench` passes `--bench` to harness-less benches.
            "--bench" => {}
            other => panic!(
                "unknown argument {other:?}; use --json, --quick, --cpu-time, --case NAME, --threads N, --only RUNNER"
            ),
        }
    }
    if opts.threads.is_empty() {
        opts.threads = vec![1, 2];
    }
    opts
}

fn main() {
    let opts = parse_args();
    if !opts.json {
        println!(
            "GFLOP/s, median; SIMD path {}; batch 64; peer = im2col + `gemm` 0.19",
            kernels::SimdPath::compiled().name()
        );
        println!(
            "{:<14} {:>3}  {:>8} {:>8} {:>8} {:>8}",
            "case", "thr", "auto", "lowered", "gemm", "of peak"
        );
    }
    for &threads in &opts.threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
        pool.install(|| {
            let peak = fma_peak(threads);
            if opts.json {
                println!("{{\"case\":\"fma_peak\",\"threads\":{threads},\"gflops\":{peak:.1}}}");
            } else {
                println!("{:<14} {threads:>3}  {peak:>8.1}", "fma_peak");
            }
            for c in CASES.iter().filter(|c| opts.cases.is_empty() || opts.cases.iter().any(|n| n == c.name))
            {
                bench_case(c, threads, &opts, peak);
            }
        });
    }
}

/// `dst (m × n, row-major) ← op(A)·op(B)` by the `gemm` crate; `(rs, cs)` strides.
#[allow(clippy::too_many_arguments)]
fn faer_gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    a: &[f32],
    (ars, acs): (usize, usize),
    b: &[f32],
    (brs, bcs): (usize, usize),
    par: gemm::Parallelism,
) {
    assert!(dst.len() >= m * n);
    assert!(m == 0 || k == 0 || a.len() > (m - 1) * ars + (k - 1) * acs);
    assert!(k == 0 || n == 0 || b.len() > (k - 1) * brs + (n - 1) * bcs);
    // SAFETY: the assertions above keep every element the strides reach inside the
    // slices; `dst` is a distinct, exclusively borrowed buffer.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            acs as isize,
            ars as isize,
            b.as_ptr(),
            bcs as isize,
            brs as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

/// ReLU(conv + bias) then 2 × 2 max pooling with argmax: fused (`ConvPath::Auto`, what
/// `net` runs) or as two passes over the full output (`ConvPath::Lowered`), which goes
/// to `full` (`N × O × OH × OW`, allocated once by the caller, outside the timing).
#[allow(clippy::too_many_arguments)]
fn forward_pooled(
    path: ConvPath,
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    full: &mut [f32],
    (pooled, argmax): (&mut [f32], &mut [u32]),
    par: Parallelism,
) {
    if path == ConvPath::Auto {
        conv2d_forward_pooled(g, input, weight, Some(bias), true, pooled, Some(argmax), par)
            .expect("pooled forward");
        return;
    }
    conv2d_forward_with(path, g, input, weight, Some(bias), true, full, par).expect("conv forward");
    kernels::pool::max_pool_2x2(full, (g.out_h(), g.out_w()), pooled, argmax).expect("pooling");
}

/// Times one case for the three paths; `peak` is the FMA ceiling at `threads`.
fn bench_case(case: &Case, threads: usize, opts: &Options, peak: f64) {
    let g = &case.g;
    let (k, cols_n, o) = (g.col_rows(), g.col_cols(), g.out_c);
    let input = fill(g.input_len(), 1);
    let weight = fill(g.weight_len(), 2);
    let bias = fill(o, 3);
    let grad_out = fill(g.output_len(), 4);
    // The peer's dY in its `O × N·OH·OW` layout.
    let s = g.out_h() * g.out_w();
    let mut dy_t = vec![0.0f32; o * cols_n];
    for (n, img) in grad_out.chunks_exact(o * s).enumerate() {
        for (oc, row) in img.chunks_exact(s).enumerate() {
            dy_t[oc * cols_n + n * s..][..s].copy_from_slice(row);
        }
    }
    let par = if threads > 1 { Parallelism::Threads } else { Parallelism::None };
    let faer_par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };

    let mut out = vec![0.0f32; g.output_len()];
    let pooled_len = g.batch * o * (g.out_h() / 2) * (g.out_w() / 2);
    let (mut pooled, mut argmax) = (vec![0.0f32; pooled_len], vec![0u32; pooled_len]);
    let mut gi = vec![0.0f32; g.input_len()];
    let mut gw = vec![0.0f32; g.weight_len()];
    let mut gb = vec![0.0f32; o];
    let mut cols = vec![0.0f32; k * cols_n];
    let mut peer_out = vec![0.0f32; o * cols_n];
    let mut peer_gw = vec![0.0f32; o * k];
    let mut peer_gi = vec![0.0f32; g.input_len()];

    // The two paths of ours agree, so that a broken kernel cannot post a fast time (the
    // tests check both against the naive reference).
    let results: Vec<Vec<f32>> = [ConvPath::Auto, ConvPath::Lowered]
        .into_iter()
        .map(|path| {
            if case.backward {
                let mut gw = vec![0.0f32; g.weight_len()];
                conv2d_backward_with(path, g, &input, &weight, &grad_out, None, &mut gw, None, par)
                    .expect("conv backward");
                gw
            } else if case.pooled {
                let (mut pooled, mut argmax) = (vec![0.0f32; pooled_len], vec![0u32; pooled_len]);
                let mut full = vec![0.0f32; g.output_len()];
                forward_pooled(path, g, &input, &weight, &bias, &mut full, (&mut pooled, &mut argmax), par);
                pooled
            } else {
                let mut out = vec![0.0f32; g.output_len()];
                conv2d_forward_with(path, g, &input, &weight, Some(&bias), true, &mut out, par)
                    .expect("conv forward");
                out
            }
        })
        .collect();
    let scale = results[1].iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (a, b) in results[0].iter().zip(&results[1]) {
        assert!((a - b).abs() <= 1e-4 * scale, "{}: auto and lowered paths differ", case.name);
    }

    // Runner 0: ours, automatic path; 1: ours on im2col + our GEMM; 2: the peer.
    let mut run = |which: usize| {
        if which == 2 {
            im2col(g, &input, &mut cols).expect("im2col");
            if case.backward {
                // dW (O × K) = dY (O × N·S) · colsᵀ.
                faer_gemm(o, k, cols_n, &mut peer_gw, &dy_t, (cols_n, 1), &cols, (1, cols_n), faer_par);
                if case.grad_input {
                    // dcols (K × N·S) = Wᵀ · dY, then col2im.
                    faer_gemm(k, cols_n, o, &mut cols, &weight, (1, k), &dy_t, (cols_n, 1), faer_par);
                    peer_gi.fill(0.0);
                    col2im(g, &cols, &mut peer_gi).expect("col2im");
                }
            } else {
                faer_gemm(o, cols_n, k, &mut peer_out, &weight, (k, 1), &cols, (cols_n, 1), faer_par);
            }
            black_box((&peer_out, &peer_gw, &peer_gi));
            return;
        }
        let path = if which == 0 { ConvPath::Auto } else { ConvPath::Lowered };
        if case.backward {
            let gi_arg = case.grad_input.then_some(&mut gi[..]);
            conv2d_backward_with(path, g, &input, &weight, &grad_out, gi_arg, &mut gw, Some(&mut gb), par)
                .expect("conv backward");
        } else if case.pooled {
            forward_pooled(path, g, &input, &weight, &bias, &mut out, (&mut pooled, &mut argmax), par);
        } else {
            conv2d_forward_with(path, g, &input, &weight, Some(&bias), true, &mut out, par)
                .expect("conv forward");
        }
        black_box((&out, &pooled, &gi, &gw));
    };

    // CPU time of the calling thread measures a one-thread run only.
    let cpu_time = opts.cpu_time && threads == 1;
    let macs = g.macs() as f64;
    let passes = if !case.backward {
        1.0
    } else if case.grad_input {
        2.0
    } else {
        1.0
    };
    let flops = 2.0 * macs * passes;
    let target = Duration::from_millis(if opts.quick { 15 } else { 40 }).as_secs_f64();
    let rounds = if opts.quick { 5 } else { 15 };
    // Enough calls per sample that one sample takes about `target`.
    // Calibrated on the second call (the first one pays for page faults).
    let iters: Vec<usize> = (0..3)
        .map(|w| {
            run(w);
            ((target / sample(1, &mut || run(w), cpu_time).max(1e-9)) as usize).clamp(1, 100_000)
        })
        .collect();
    let mut times = vec![Vec::new(); 3];
    // Interleaved (auto, lowered, peer, auto, …) so that noise from other processes on
    // this shared machine hits all three alike.
    let names = ["auto", "lowered", "gemm"];
    for _ in 0..rounds {
        for (w, t) in times.iter_mut().enumerate() {
            if opts.only.as_ref().is_some_and(|o| o != names[w]) {
                t.push(f64::INFINITY);
                continue;
            }
            t.push(sample(iters[w], &mut || run(w), cpu_time));
        }
    }
    let gflops: Vec<f64> = times.into_iter().map(|t| flops / median(t) / 1e9).collect();
    if opts.json {
        println!(
            "{{\"case\":\"{}\",\"threads\":{threads},\"gflops\":{:.1},\"lowered\":{:.1},\"peers\":{{\"gemm\":{:.1}}}}}",
            case.name, gflops[0], gflops[1], gflops[2]
        );
    } else {
        println!(
            "{:<14} {:>3}  {:>8.1} {:>8.1} {:>8.1} {:>7.1}%",
            case.name,
            threads,
            gflops[0],
            gflops[1],
            gflops[2],
            100.0 * gflops[0] / peak
        );
    }
}
