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
    fn skipping_needs_a_sixteenth_of_the_steps() {
        assert!(!worth_skipping(64, 64));
        assert!(!worth_skipping(60, 64));
        assert!(worth_skipping(59, 64));
        assert!(worth_skipping(0, 1));
    }
}
