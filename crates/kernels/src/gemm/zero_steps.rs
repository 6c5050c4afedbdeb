//! Which steps of `k` a packed micro-panel can skip: those where every one of its
//! values is zero.
//!
//! A step where the whole A micro-panel (or the whole B micro-panel) is zero adds only
//! ±0 products to the tile, so the microkernel may leave it out
//! ([`super::microkernel::tile`] with its `steps`) and produce the same bits. This pays on data
//! that is mostly zeros in blocks: MNIST images are 81% zero pixels, and a pixel is zero
//! in all 8 images of a B micro-panel for 53% of the pixels, so the first layer of an
//! MLP does half of its forward multiply-adds for nothing (and skips ~30% of its
//! weight-gradient steps, where the micro-panel holds 48 pixels of one image).
//!
//! A mask has one bit per step: bit `p % 64` of word `p / 64` is set when step `p` has
//! a value that is not ±0 (NaN and infinities count as non-zero). Bits past `kc` stay 0.

/// Words of a mask for `kc` steps.
pub fn words(kc: usize) -> usize {
    kc.div_ceil(64)
}

/// Fills `mask` (`words(kc)` words) for the micro-panel of `kc` steps of `W` contiguous
/// values at `panel`, and returns how many steps are non-zero.
///
/// # Safety
/// `panel` must be readable for `kc · W` values.
pub unsafe fn scan<const W: usize>(panel: *const f32, kc: usize, mask: &mut [u64]) -> usize {
    debug_assert_eq!(mask.len(), words(kc));
    let mut nonzero = 0;
    for (w, word) in mask.iter_mut().enumerate() {
        let mut bits = 0u64;
        for q in 0..64.min(kc - w * 64) {
            let p = w * 64 + q;
            // SAFETY: p < kc, so the W values of step p are inside the panel.
            let values = unsafe { panel.add(p * W).cast::<[u32; W]>().read_unaligned() };
            // Shifting out the sign bit makes -0 count as zero; OR over the step is
            // branch-free and vectorises.
            let any = values.iter().fold(0u32, |acc, &v| acc | (v << 1));
            bits |= u64::from(any != 0) << q;
        }
        *word = bits;
        nonzero += bits.count_ones() as usize;
    }
    nonzero
}

/// [`scan`] for a micro-panel read in place: its `W` columns are the `kc` contiguous
/// values at `origin + j·cs` for `j < W` (a B whose columns are contiguous).
///
/// Sixteen steps at a time: the `W` columns' values are ORed lane by lane, so the loop
/// reads each column as contiguous vectors instead of gathering one value per column.
///
/// # Safety
/// `origin + j·cs + p` must be readable for `j < W`, `p < kc`.
pub unsafe fn scan_columns<const W: usize>(
    origin: *const f32,
    cs: usize,
    kc: usize,
    mask: &mut [u64],
) -> usize {
    debug_assert_eq!(mask.len(), words(kc));
    const CHUNK: usize = 16;
    let mut nonzero = 0;
    for (w, word) in mask.iter_mut().enumerate() {
        let steps = 64.min(kc - w * 64);
        let mut bits = 0u64;
        let mut q = 0;
        while q < steps {
            let len = CHUNK.min(steps - q);
            let p = w * 64 + q;
            let mut any = [0u32; CHUNK];
            for j in 0..W {
                // SAFETY: p + len ≤ kc, so the values are inside column j.
                let col = unsafe { origin.add(j * cs + p) }.cast::<u32>();
                if len == CHUNK {
                    // SAFETY: as above, 16 values.
                    let values = unsafe { col.cast::<[u32; CHUNK]>().read_unaligned() };
                    for (a, v) in any.iter_mut().zip(values) {
                        *a |= v << 1;
                    }
                } else {
                    for (l, a) in any.iter_mut().enumerate().take(len) {
                        // SAFETY: l < len, as above.
                        *a |= unsafe { *col.add(l) } << 1;
                    }
                }
            }
            // Shifting out the sign bit makes -0 count as zero, as in `scan`.
            let chunk = any.iter().enumerate().fold(0u64, |m, (l, &a)| m | (u64::from(a != 0) << l));
            bits |= chunk << q;
            q += len;
        }
        *word = bits;
        nonzero += bits.count_ones() as usize;
    }
    nonzero
}

/// Whether a tile whose combined mask keeps `kept` of `kc` steps should run
/// [`super::microkernel::tile`] with a step mask rather than its full loop: the step-by-bit loop
/// costs a little more per step than the unrolled one, so it must skip enough to pay.
pub fn worth_skipping(kept: usize, kc: usize) -> bool {
    kept + kc / 16 < kc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_steps_with_any_value_that_is_not_zero() {
        const W: usize = 3;
        let kc = 70;
        let mut panel = vec![0.0f32; kc * W];
        panel[W] = 1.0; // step 1
        panel[5 * W + 2] = f32::NAN; // step 5
        panel[7 * W] = -0.0; // step 7 stays zero
        panel[64 * W + 1] = f32::NEG_INFINITY; // step 64
        panel[69 * W + 2] = 1e-45; // step 69: a denormal
        let mut mask = vec![u64::MAX; words(kc)];
        // SAFETY: the panel holds kc · W values.
        let kept = unsafe { scan::<W>(panel.as_ptr(), kc, &mut mask) };
        assert_eq!(kept, 4);
        assert_eq!(mask, vec![(1 << 1) | (1 << 5), 1 | (1 << 5)]);
    }

    #[test]
    fn columns_read_in_place_give_the_mask_of_their_packed_panel() {
        const W: usize = 3;
        let cs = 101;
        for kc in [1, 15, 16, 17, 63, 64, 65, 100] {
            // Column j's value at step p; zero unless one of a few (p, j) is set.
            let value = |p: usize, j: usize| match (p % 23, j) {
                (0, 0) => 1.0,
                (5, 2) => f32::NAN,
                (7, 1) => -0.0,
                (11, 2) => 1e-45,
                (16, 1) => f32::NEG_INFINITY,
                _ => 0.0,
            };
            let mut cols = vec![9.0f32; W * cs];
            let mut panel = vec![0.0f32; kc * W];
            for p in 0..kc {
                for j in 0..W {
                    cols[j * cs + p] = value(p, j);
                    panel[p * W + j] = value(p, j);
                }
            }
            let (mut in_place, mut packed) = (vec![u64::MAX; words(kc)], vec![0; words(kc)]);
            // SAFETY: column j holds cs ≥ kc values; the panel holds kc · W.
            let (a, b) = unsafe {
                (
                    scan_columns::<W>(cols.as_ptr(), cs, kc, &mut in_place),
                    scan::<W>(panel.as_ptr(), kc, &mut packed),
                )
            };
            assert_eq!((a, &in_place), (b, &packed), "kc = {kc}");
            assert!(a > 0);
        }
    }

    #[test]
    fn skipping_needs_a_sixteenth_of_the_steps() {
        assert!(!worth_skipping(64, 64));
        assert!(!worth_skipping(60, 64));
        assert!(worth_skipping(59, 64));
        assert!(worth_skipping(0, 1));
    }
}
