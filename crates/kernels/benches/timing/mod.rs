//! What the kernel benchmarks share: deterministic inputs, the median, and timing by
//! wall clock or by this thread's CPU time.

use std::time::Instant;

/// A deterministic fill in [-1, 1) (a small LCG; the values do not matter, only that
/// they are not denormal or special).
pub fn fill(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// The median of `xs` (the mean of the middle two for an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 { xs[n / 2] } else { 0.5 * (xs[n / 2 - 1] + xs[n / 2]) }
}

/// `struct timespec` of Linux x86-64.
#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    /// POSIX `clock_gettime` from the C library std already links.
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// Linux's `CLOCK_THREAD_CPUTIME_ID`.
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

/// Seconds this thread has spent on a CPU: unlike wall time, it does not count the
/// time other processes held the core.
fn thread_cpu_seconds() -> f64 {
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a Linux constant.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Seconds per call of `f`, averaged over `iters` calls: wall time, or this thread's
/// CPU time with `cpu_time` (meaningful only when everything runs on this thread).
pub fn sample(iters: usize, f: &mut dyn FnMut(), cpu_time: bool) -> f64 {
    let (t, cpu0) = (Instant::now(), if cpu_time { thread_cpu_seconds() } else { 0.0 });
    for _ in 0..iters {
        f();
    }
    if cpu_time {
        (thread_cpu_seconds() - cpu0) / iters as f64
    } else {
        t.elapsed().as_secs_f64() / iters as f64
    }
}

/// The widest SIMD vector compiled in, as in `kernels`' microkernel.
#[cfg(all(target_feature = "avx512f", target_feature = "fma"))]
type Lanes = wide::f32x16;
#[cfg(all(
    not(all(target_feature = "avx512f", target_feature = "fma")),
    target_feature = "avx2",
    target_feature = "fma"
))]
type Lanes = wide::f32x8;
#[cfg(not(all(target_feature = "avx2", target_feature = "fma")))]
type Lanes = wide::f32x4;

/// Independent accumulator chains of the peak loop: at least an FMA's latency times the
/// FMAs issued per cycle (4 × 2 on the x86 cores of today), within the register file.
const CHAINS: usize = if size_of::<Lanes>() == 64 { 24 } else { 12 };

/// `steps` rounds of one fused multiply-add on each of [`CHAINS`] register-resident
/// vectors: no loads, no stores, no dependency between the chains.
fn fma_chains(steps: usize) -> f32 {
    let a = Lanes::splat(std::hint::black_box(1.000_000_1));
    let b = Lanes::splat(std::hint::black_box(-0.000_000_1));
    let mut acc = [Lanes::splat(std::hint::black_box(1.0)); CHAINS];
    for _ in 0..steps {
        for x in acc.iter_mut() {
            *x = x.mul_add(a, b);
        }
    }
    acc.iter().map(|x| x.reduce_add()).sum()
}

/// This machine's floating-point ceiling in GFLOP/s on `threads` threads (each thread of
/// the current rayon pool runs the loop of [`fma_chains`] at once): what no kernel
/// can beat, against which a GEMM's figure reads as a fraction. Median of 5 samples of
/// about 50 ms.
pub fn fma_peak(threads: usize) -> f64 {
    let steps = 8_000_000;
    let flops = (steps * CHAINS * size_of::<Lanes>() / size_of::<f32>() * 2 * threads) as f64;
    let times = (0..5)
        .map(|_| {
            let t = Instant::now();
            let sums = rayon::broadcast(|_| fma_chains(std::hint::black_box(steps)));
            std::hint::black_box(sums);
            t.elapsed().as_secs_f64()
        })
        .collect();
    flops / median(times) / 1e9
}
