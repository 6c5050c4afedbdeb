//! Register and cache blocking of the GEMM: the microkernel tile `MR × NR` and the
//! three cache blocks `KC`, `MC`, `NC`, each derived from this machine's caches.
//!
//! The machines (read from `/sys/devices/system/cpu/cpu0/cache`), both with AVX-512 under
//! KVM, 2 cores, 64-byte lines:
//!
//! * an Intel Xeon (family 6 model 167; until 2026-11-28 and again since 2026-12-08):
//!   L1d 48 KiB 12-way (4 KiB per way), L2 2 MiB 16-way (128 KiB per way) per core, L3
//!   480 MiB shared; two 512-bit FMA units (228–234 GFLOP/s per core, about 3.6 GHz,
//!   `cargo xtask bench gemm`'s `fma_peak`; the squares reach 71–74% of it, no library
//!   measured here more than 80%);
//! * on 2026-12-07 an AMD EPYC Zen 4 (family 25 model 17, Genoa): L1d 32 KiB 8-way
//!   (4 KiB per way), L2 1 MiB 8-way (128 KiB per way) per core, L3 32 MiB shared; a
//!   512-bit FMA issues over two 256-bit units, one per cycle (117 GFLOP/s per core at
//!   its 3.7 GHz).
//!
//! In kernel orientation (see `driver`), the microkernel computes an `MR × NR` tile of
//! C whose `MR` rows are `MR / LANES` SIMD vectors and whose `NR` columns are
//! broadcasts of packed B:
//!
//! * `MR × NR` (registers): with 32 zmm registers, 48 × 8 keeps 3 · 8 = 24
//!   accumulators, 3 vectors of A and 1 broadcast of B live (28 registers) and does 24
//!   FMAs per 11 loads, inside the Xeon's two-FMA, two-or-three-load budget of a cycle
//!   (and further inside Zen 4's, which issues one 512-bit FMA per cycle). BLIS
//!   uses 32 × 12 on Skylake-X (24 FMAs per 14 loads); 48 × 8 measured ~5–10% faster
//!   here and fits this project's shapes better: n = 64 (MLP batch) and n = 16 (conv2)
//!   are whole multiples of 8, where 12 wastes 11% and 33% of a tile. The `gemm`
//!   crate's 64 × 6 (4 vectors, 10 loads per 24 FMAs) measured the same as 48 × 8
//!   within noise on these shapes on the Xeon, and on Zen 4 the same on the squares but
//!   4–12% slower on the MLP shapes (three alternating rounds, CPU time, 1 thread; the
//!   same bits: a tile's shape does not change any element's order of summation);
//!   trying it is a change of `MV`/`NR` in `microkernel.rs`, the edge dispatch in
//!   `driver.rs` already handles `MV = 4`. AVX2 (16 ymm) uses 16 × 6 (12 + 2 + 1 = 15
//!   registers) and the portable path 8 × 6 on 16 xmm registers.
//! * `KC` cuts LOOP 4 (the `k` dimension) and sizes the B micro-panel `KC × NR` that
//!   stays in L1 while LOOP 1 streams A micro-panels past it: 512 · 8 · 4 B = 16 KiB,
//!   4 of the 12 ways of the Xeon's L1d and 4 of the 8 of Zen 4's, leaving the rest for
//!   the A micro-panel stream (192 B per step) and the C tile. (BLIS takes 384 for a
//!   32 KiB 8-way L1 on Skylake-X and 480 on Zen 4.) `k` is cut into equal blocks of at
//!   most `KC` (see [`Blocking::kc_for`]). `KC` is a constant rather than read off the
//!   machine because it decides how each sum over `k` is associated: a different `KC`
//!   gives different bits, and a model trained with one seed must give the same bits on
//!   every machine that runs the same SIMD path.
//! * `MC` cuts LOOP 3 (the `m` dimension) and sizes the packed block A~ `MC × KC`,
//!   which stays in L2 across LOOP 2: 480 · 512 · 4 B = 960 KiB, under half of the
//!   Xeon's L2 (8 of 16 ways), so that the B micro-panels and C lines streaming through
//!   do not evict it. On Zen 4 it nearly fills the 1 MiB L2, as BLIS's own Genoa
//!   blocking does (`MC` 512 × `KC` 480, 960 KiB): each A micro-panel is read once per B
//!   micro-panel and streams from L2 at 8 bytes per cycle, which its prefetchers keep
//!   up with. (`MC` does not change a bit of the result.)
//! * `NC` cuts LOOP 5 (the `n` dimension) and sizes the packed block B~ `KC × NC`,
//!   which lives in L3: 512 · 4096 · 4 B = 8 MiB, a quarter of Zen 4's 32 MiB L3, but
//!   enough that no shape of this project needs more than one pass of LOOP 5 per
//!   k-block, so A~ is packed once per k-block.
//!
//! Sweeping `KC` ∈ {192, 256, 384, 512} × `MC` ∈ {128, 240, 256, 480, 512} on the
//! Xeon's squares and MLP shapes (`cargo xtask bench gemm --cpu-time`, with
//! `ACTPRUNE_GEMM_KC`/`_MC`) moved results by less than the run-to-run noise (±8%), and
//! `MC` ∈ {480, 336, 240, 144, 96} on Zen 4 (two rounds, CPU time, 1 thread) by under 2%
//! (noise 2%), so the cache-derived values stand on both. On the idle Xeon (2026-12-08,
//! two rounds, squares 512–2048 at 1 thread beside the `gemm` crate) `MC` 240 and 480
//! measured the same, 720 (1.4 MiB of L2) lost up to 7% at 2048 and 960 (1.9 MiB) 20% at
//! 1024 and 2048: A~ must leave room in L2 for the B~ panels streaming past it.
//!
//! `KC`, `MC` and `NC` can be overridden for tuning, without a rebuild, through the
//! environment variables `ACTPRUNE_GEMM_KC`, `ACTPRUNE_GEMM_MC` and `ACTPRUNE_GEMM_NC`
//! (read once per process). `MC` is rounded to a multiple of `MR` and `NC` to one of
//! `NR`. `MR` and `NR` are compile-time constants because the microkernel's
//! accumulators are an array of registers.

use std::sync::OnceLock;

use super::microkernel::{MR, NR};

/// Default depth of a k-block (LOOP 4): the B micro-panel `KC × NR` fills a third of L1d.
pub const KC: usize = 512;
/// Default height of a packed A block (LOOP 3): A~ `MC × KC` fills under half of L2.
pub const MC: usize = 480;
/// Default width of a packed B block (LOOP 5): B~ `KC × NC` is 8 MiB, in L3.
pub const NC: usize = 4096;

/// The cache blocks in effect for this process (defaults or environment overrides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking {
    /// Depth of a k-block, ≥ 1.
    pub kc: usize,
    /// Height of a packed A block, a positive multiple of `MR`.
    pub mc: usize,
    /// Width of a packed B block, a positive multiple of `NR`.
    pub nc: usize,
}

impl Blocking {
    /// The blocking of this process, read once.
    pub fn get() -> Self {
        static BLOCKING: OnceLock<Blocking> = OnceLock::new();
        *BLOCKING.get_or_init(|| {
            let var = |name: &str, default: usize| {
                std::env::var(name)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|&v| v > 0)
                    .unwrap_or(default)
            };
            Self::new(var("ACTPRUNE_GEMM_KC", KC), var("ACTPRUNE_GEMM_MC", MC), var("ACTPRUNE_GEMM_NC", NC))
        })
    }

    /// A blocking with `mc` and `nc` rounded up to multiples of `MR` and `NR`.
    pub fn new(kc: usize, mc: usize, nc: usize) -> Self {
        Self { kc: kc.max(1), mc: mc.max(1).div_ceil(MR) * MR, nc: nc.max(1).div_ceil(NR) * NR }
    }

    /// The k-block depth actually used for a product of depth `k`: `k` is cut into
    /// `⌈k / kc⌉` blocks of (almost) equal depth, so that 784 becomes 392 + 392
    /// rather than 512 + 272. Depends on `k` only, never on the thread count.
    pub fn kc_for(&self, k: usize) -> usize {
        let blocks = k.div_ceil(self.kc).max(1);
        k.div_ceil(blocks).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_rounded_to_the_tile() {
        let b = Blocking::new(100, MR + 1, NR + 1);
        assert_eq!((b.kc, b.mc, b.nc), (100, 2 * MR, 2 * NR));
        let d = Blocking::new(KC, MC, NC);
        assert_eq!(d.mc % MR, 0);
        assert_eq!(d.nc % NR, 0);
    }

    #[test]
    fn k_is_cut_into_balanced_blocks() {
        let b = Blocking::new(512, MC, NC);
        assert_eq!(b.kc_for(784), 392);
        assert_eq!(b.kc_for(512), 512);
        assert_eq!(b.kc_for(513), 257);
        assert_eq!(b.kc_for(0), 1);
        assert_eq!(b.kc_for(1), 1);
    }
}
