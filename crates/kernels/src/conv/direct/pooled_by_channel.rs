//! The pooled forward with the vector lanes over output channels (AVX-512, `O` a
//! multiple of 16): for LeNet-5's conv2, whose 10-pixel rows fill 10 of the 16 lanes of
//! the row-lane tile, while its 16 channels fill one vector exactly.
//!
//! A tile is 2 rows × `XN` columns of outputs (`XN` even, ≤ 12: 24 accumulators), one
//! vector of 16 channels each. Per tap it loads the 16 channels' weights (`wt` is
//! `K × O`, so they are adjacent) and broadcasts each of the tile's `2·XN` input pixels:
//! about one load per FMA, which the two load ports and two FMA ports match.
//!
//! Same bits as the row-lane tile: each output sums the same products, `x·w` added
//! to an accumulator that starts at +0, in the same tap order, by FMA; then `+ bias`
//! and `max(·, 0)` as there (`_mm512_max_ps(v, 0)`, which is what `wide`'s `max` runs
//! for a non-NaN right operand); and the 2 × 2 windows by the pooling kernel's chain of
//! strict `>` compares over (top left, top right, bottom left, bottom right).

use std::arch::x86_64::*;

use super::{FwdArgs, Plan};

/// Lanes of a vector (channels per vector).
const L: usize = 16;

/// Most output columns of a tile (even: whole windows).
const XN_MAX: usize = 12;

/// Whether the kernel handles `plan`'s pooled forward: channels in whole vectors.
pub(super) fn supports(plan: &Plan) -> bool {
    plan.o > 0 && plan.o.is_multiple_of(L) && plan.oh >= 2 && plan.ow >= 2 && plan.c > 0
}

/// The pooled output (`O × ⌊OH/2⌋ × ⌊OW/2⌋`) of one padded image (`a.padded`), and
/// its argmax (same shape, or empty); see [`super::forward_pooled`]. `a.o0` is ignored.
pub(super) fn image(a: &FwdArgs<'_>, out: &mut [f32], arg: &mut [u32]) {
    let plan = a.plan;
    let (ph, pw) = (plan.oh / 2, plan.ow / 2);
    assert!(supports(plan) && out.len() == plan.o * ph * pw && (arg.is_empty() || arg.len() == out.len()));
    assert!(a.padded.len() >= plan.padded_len() && a.wt.len() == a.taps.len() * plan.o);
    // Every tap offset plus the largest pixel a tile reads, `(OH − 1)·WP + OW − 1`, stays
    // inside the padded image, as for the row-lane tile.
    assert!(a.taps.iter().all(|&t| t <= plan.last_tap()));
    for ov in 0..plan.o / L {
        for py in 0..ph {
            let mut x0 = 0;
            while x0 < 2 * pw {
                let xn = (2 * pw - x0).min(XN_MAX);
                match xn {
                    2 => tile::<2>(a, ov, py, x0, out, arg),
                    4 => tile::<4>(a, ov, py, x0, out, arg),
                    6 => tile::<6>(a, ov, py, x0, out, arg),
                    8 => tile::<8>(a, ov, py, x0, out, arg),
                    10 => tile::<10>(a, ov, py, x0, out, arg),
                    _ => tile::<XN_MAX>(a, ov, py, x0, out, arg),
                }
                x0 += xn;
            }
        }
    }
}

/// Channels `16·ov ..` of the windows over output rows `2·py, 2·py + 1` and columns
/// `x0 .. x0 + XN`.
#[inline(always)]
fn tile<const XN: usize>(a: &FwdArgs<'_>, ov: usize, py: usize, x0: usize, out: &mut [f32], arg: &mut [u32]) {
    let p = a.plan;
    let (ph, pw) = (p.oh / 2, p.ow / 2);
    let y0 = 2 * py;
    assert!(XN.is_multiple_of(2) && x0 + XN <= 2 * pw && y0 + 2 <= p.oh && 16 * (ov + 1) <= p.o);
    let origin = y0 * p.wp + x0;
    // Pixel reads are at `origin + r·WP + x + tap` with `r ≤ 1`, `x < XN`, so at most
    // `(OH − 1)·WP + OW − 1 + last_tap < C·HP·WP ≤ padded.len()` (asserted by `image`:
    // `HP = OH + KH − 1`, `WP ≥ OW + KW − 1`).
    // SAFETY: AVX-512F is enabled (the module's cfg); pixel reads are in bounds (above);
    // weight reads at `t·O + 16·ov .. + 16`, `t < taps.len()`, `16·(ov + 1) ≤ O`, are
    // inside `wt` (`taps.len()·O`).
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); XN]; 2];
        let (px, pwt) = (a.padded.as_ptr().add(origin), a.wt.as_ptr().add(16 * ov));
        for (t, &off) in a.taps.iter().enumerate() {
            let w = _mm512_loadu_ps(pwt.add(t * p.o));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                for (x, acc_rx) in acc_r.iter_mut().enumerate() {
                    let s = _mm512_set1_ps(*px.add(r * p.wp + x + off));
                    *acc_rx = _mm512_fmadd_ps(s, w, *acc_rx);
                }
            }
        }
        let b = a.bias.map_or(_mm512_setzero_ps(), |b| _mm512_loadu_ps(b[16 * ov..16 * ov + 16].as_ptr()));
        for acc_rx in acc.iter_mut().flatten() {
            *acc_rx = _mm512_add_ps(*acc_rx, b);
            if a.relu {
                *acc_rx = _mm512_max_ps(*acc_rx, _mm512_setzero_ps());
            }
        }
        let (one, below, below1) =
            (_mm512_set1_epi32(1), _mm512_set1_epi32(p.ow as i32), _mm512_set1_epi32(p.ow as i32 + 1));
        for wx in 0..XN / 2 {
            let (mut mx, mut i) = (acc[0][2 * wx], _mm512_setzero_si512());
            for (v, at) in [(acc[0][2 * wx + 1], one), (acc[1][2 * wx], below), (acc[1][2 * wx + 1], below1)]
            {
                let k = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, mx);
                mx = _mm512_mask_blend_ps(k, mx, v);
                i = _mm512_mask_blend_epi32(k, i, at);
            }
            let pos = _mm512_add_epi32(i, _mm512_set1_epi32((y0 * p.ow + x0 + 2 * wx) as i32));
            let (mut vals, mut poss) = ([0.0f32; L], [0u32; L]);
            _mm512_storeu_ps(vals.as_mut_ptr(), mx);
            _mm512_storeu_si512(poss.as_mut_ptr().cast(), pos);
            // Channel lane l's window goes to plane `16·ov + l` of the NCHW output.
            let at = py * pw + x0 / 2 + wx;
            for (l, (&v, &q)) in vals.iter().zip(&poss).enumerate() {
                let k = (16 * ov + l) * ph * pw + at;
                out[k] = v;
                if !arg.is_empty() {
                    arg[k] = q;
                }
            }
        }
    }
}
