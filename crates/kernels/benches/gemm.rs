//! GEMM benchmark: GFLOP/s (2·m·n·k / time, median of repeated samples) of our
//! `kernels::gemm` beside the `gemm` crate (0.19, x86-v4) and `matrixmultiply` (0.3,
//! avx512 + threading), for 1 and 2 threads, over the shapes this project runs.
//!
//! Usage: `cargo bench -p kernels --bench gemm -- [--json] [--quick] [--cpu-time]
//! [--shape NAME]... [--threads N]...` (or `cargo xtask bench gemm`). `--cpu-time` times
//! one-thread runs by the thread's CPU time rather than wall time, which is steadier
//! while other processes compete for the cores (a tuning aid; wall time is the default). `--json` prints one object per line:
//! `{"shape":"sq1024","m":1024,"k":1024,"n":1024,"threads":1,"gflops":…,"peers":{…}}`.
//!
//! `matrixmultiply` reads its thread count once per process (`MATMUL_NUM_THREADS`), so
//! the parent process re-runs this binary once per thread count with that variable
//! set and passes the child's output through.
//!
//! Samples of the three libraries are interleaved (ours, gemm, matrixmultiply, ours,
//! …) so that noise from other processes on this shared machine hits all three alike;
//! the figure reported is the median sample.
//!
//! Each thread count starts with this machine's FMA ceiling at that count (registers
//! only, see `timing::fma_peak`), and the table gives ours as a fraction of it
//! (`{"shape":"fma_peak","threads":…,"gflops":…}` in JSON).

use std::hint::black_box;
use std::process::Command;
use std::time::Duration;

use kernels::{Epilogue, MatMut, MatRef, Parallelism};
use timing::{fill, fma_peak, median, sample};

mod timing;

/// Environment variable that marks a child run and gives its thread count.
const CHILD_THREADS: &str = "ACTPRUNE_BENCH_THREADS";

/// One benchmark shape: `C (m × n) = op(A) (m × k) · op(B) (k × n)`, row-major storage.
struct Shape {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    /// A is stored `k × m` and used transposed.
    ta: bool,
    /// B is stored `n × k` and used transposed.
    tb: bool,
}

const fn shape(name: &'static str, m: usize, k: usize, n: usize, ta: bool, tb: bool) -> Shape {
    Shape { name, m, k, n, ta, tb }
}

/// The shapes of issue #3: squares; the MLP's dense layers forward and their backward
/// forms (weight gradient `Aᵀ·B`, input gradient `A·Bᵀ`); LeNet's convolutions lowered
/// by im2col at batch 64, in both orientations.
const SHAPES: &[Shape] = &[
    shape("sq256", 256, 256, 256, false, false),
    shape("sq512", 512, 512, 512, false, false),
    shape("sq1024", 1024, 1024, 1024, false, false),
    shape("sq2048", 2048, 2048, 2048, false, false),
    shape("mlp784", 64, 784, 600, false, false),
    shape("mlp600", 64, 600, 600, false, false),
    shape("mlp784_AtB", 784, 64, 600, true, false),
    shape("mlp784_ABt", 64, 600, 784, false, true),
    shape("conv1", 50176, 25, 6, false, false),
    shape("conv1_t", 6, 25, 50176, false, false),
    shape("conv2", 6400, 150, 16, false, false),
    shape("conv2_t", 16, 150, 6400, false, false),
];

struct Options {
    json: bool,
    quick: bool,
    cpu_time: bool,
    shapes: Vec<String>,
    threads: Vec<usize>,
}

fn parse_args() -> Options {
    let mut opts =
        Options { json: false, quick: false, cpu_time: false, shapes: Vec::new(), threads: Vec::new() };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => opts.json = true,
            "--quick" => opts.quick = true,
            "--cpu-time" => opts.cpu_time = true,
            "--shape" => opts.shapes.push(args.next().expect("--shape needs a name")),
            "--threads" => {
                opts.threads.push(args.next().and_then(|t| t.parse().ok()).expect("--threads needs a number"))
            }
            // `cargo bench` passes `--bench` to harness-less benches.
            "--bench" => {}
            other => panic!(
                "unknown argument {other:?}; use --json, --quick, --cpu-time, --shape NAME, --threads N"
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
    match std::env::var(CHILD_THREADS).ok().and_then(|t| t.parse::<usize>().ok()) {
        Some(threads) => child(&opts, threads),
        None => {
            if !opts.json {
                println!(
                    "GFLOP/s, median; SIMD path {}; ours vs peers `gemm` 0.19 and `matrixmultiply` 0.3; \
                     of peak = ours / the FMA ceiling at that thread count",
                    kernels::SimdPath::compiled().name()
                );
                println!(
                    "{:<12} {:>6} {:>5} {:>6} {:>3}  {:>8} {:>8} {:>8} {:>8}",
                    "shape", "m", "k", "n", "thr", "ours", "gemm", "mm", "of peak"
                );
            }
            for &threads in &opts.threads {
                let exe = std::env::current_exe().expect("path of this benchmark");
                let status = Command::new(exe)
                    .args(std::env::args().skip(1))
                    .env(CHILD_THREADS, threads.to_string())
                    .env("MATMUL_NUM_THREADS", threads.to_string())
                    .status()
                    .expect("re-run the benchmark for one thread count");
                assert!(status.success(), "benchmark child for {threads} threads failed");
            }
        }
    }
}

fn child(opts: &Options, threads: usize) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
    pool.install(|| {
        let peak = fma_peak(threads);
        if opts.json {
            println!("{{\"shape\":\"fma_peak\",\"threads\":{threads},\"gflops\":{peak:.1}}}");
        } else {
            println!("{:<12} {:>6} {:>5} {:>6} {threads:>3}  {peak:>8.1}", "fma_peak", "-", "-", "-");
        }
        for s in SHAPES.iter().filter(|s| opts.shapes.is_empty() || opts.shapes.iter().any(|n| n == s.name)) {
            bench_shape(s, threads, opts, peak);
        }
    });
}

/// A GEMM under test: writes `op(A)·op(B)` into its row-major `m × n` argument.
type Runner<'a> = &'a dyn Fn(&mut [f32]);

/// Times one shape for the three libraries; `peak` is the FMA ceiling at `threads`.
fn bench_shape(s: &Shape, threads: usize, opts: &Options, peak: f64) {
    let (m, k, n) = (s.m, s.k, s.n);
    let a = fill(m * k, 1);
    let b = fill(k * n, 2);
    // Strides (row, column) of op(A), op(B) over their row-major storage.
    let (ars, acs) = if s.ta { (1, m) } else { (k, 1) };
    let (brs, bcs) = if s.tb { (1, k) } else { (n, 1) };
    let par = if threads > 1 { Parallelism::Threads } else { Parallelism::None };

    let ours = |c: &mut [f32]| {
        let av = MatRef::new(&a, m, k, ars, acs).expect("A view");
        let bv = MatRef::new(&b, k, n, brs, bcs).expect("B view");
        let mut cv = MatMut::row_major(c, m, n).expect("C view");
        kernels::gemm(1.0, av, bv, 0.0, &mut cv, &Epilogue::NONE, par).expect("gemm");
    };
    let faer_par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    let faer = |c: &mut [f32]| {
        // SAFETY: the pointers and strides describe the row-major buffers above, sized
        // for these shapes; dst does not alias lhs or rhs.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
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
                faer_par,
            );
        }
    };
    let mm = |c: &mut [f32]| {
        // SAFETY: as above.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                ars as isize,
                acs as isize,
                b.as_ptr(),
                brs as isize,
                bcs as isize,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    };

    // Check once that the three agree, so that a broken kernel cannot post a fast time.
    let fns: [Runner<'_>; 3] = [&ours, &faer, &mm];
    let mut outs = vec![vec![0.0f32; m * n]; 3];
    for (f, c) in fns.iter().zip(&mut outs) {
        f(c);
    }
    let (c, c2, c3) = (&outs[0], &outs[1], &outs[2]);
    let scale = (k as f32).sqrt().max(1.0);
    for ((x, y), z) in c.iter().zip(c2).zip(c3) {
        assert!((x - y).abs() <= 1e-4 * scale && (x - z).abs() <= 1e-4 * scale, "{}: results differ", s.name);
    }

    // CPU time of the calling thread measures a one-thread run only.
    let cpu_time = opts.cpu_time && threads == 1;
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    // Enough calls per sample that one sample takes about `target`.
    let target = Duration::from_millis(if opts.quick { 15 } else { 40 }).as_secs_f64();
    let rounds = if opts.quick { 5 } else { 11 };
    let iters: Vec<usize> = fns
        .iter()
        .zip(&mut outs)
        .map(|(f, c)| {
            let once = sample(
                1,
                &mut || {
                    f(&mut *c);
                    black_box(&mut *c);
                },
                cpu_time,
            );
            ((target / once.max(1e-9)) as usize).clamp(1, 100_000)
        })
        .collect();
    let mut times = vec![Vec::new(); 3];
    for _ in 0..rounds {
        for (i, (f, c)) in fns.iter().zip(&mut outs).enumerate() {
            times[i].push(sample(
                iters[i],
                &mut || {
                    f(&mut *c);
                    black_box(&mut *c);
                },
                cpu_time,
            ));
        }
    }
    let gflops: Vec<f64> = times.into_iter().map(|t| flops / median(t) / 1e9).collect();
    if opts.json {
        println!(
            "{{\"shape\":\"{}\",\"m\":{m},\"k\":{k},\"n\":{n},\"threads\":{threads},\"gflops\":{:.1},\"peers\":{{\"gemm\":{:.1},\"matrixmultiply\":{:.1}}}}}",
            s.name, gflops[0], gflops[1], gflops[2]
        );
    } else {
        println!(
            "{:<12} {:>6} {:>5} {:>6} {:>3}  {:>8.1} {:>8.1} {:>8.1} {:>7.1}%",
            s.name,
            m,
            k,
            n,
            threads,
            gflops[0],
            gflops[1],
            gflops[2],
            100.0 * gflops[0] / peak
        );
    }
}
