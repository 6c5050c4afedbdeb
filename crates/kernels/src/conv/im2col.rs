//! The im2col lowering and its adjoint, col2im, over a run of consecutive images.
//!
//! Layout (see the module legend in `conv`): `cols` is row-major `(C·KH·KW) × (B·OH·OW)`
//! for a run of `B` images; row `(c, ky, kx)`, column `(n, y, x)`. The padding is
//! handled as ranges: for a tap `kx` the outputs `x` that read inside the input form
//! one contiguous range `[lo, hi)` (computed once per tap), so the inner loops are a
//! zero fill, a copy (stride 1) or a strided gather, and never test a pixel.

use super::{ConvGeometry, copy_short};

/// The outputs `x ∈ [lo, hi)` whose input column `x·s + k − p` lies in `[0, len)`,
/// and that first input column `x·s + k − p` for `x = lo`.
#[derive(Debug, Clone, Copy)]
struct ValidRange {
    lo: usize,
    hi: usize,
    first_in: usize,
}

/// The range of outputs (of `out_len`) that tap `k` maps inside an input of `len` pixels.
fn valid_range(out_len: usize, len: usize, k: usize, stride: usize, pad: usize) -> ValidRange {
    // x·s + k ≥ p  ⇔  x ≥ ⌈(p − k)/s⌉.
    let lo = if k >= pad { 0 } else { (pad - k).div_ceil(stride) }.min(out_len);
    // x·s + k − p ≤ len − 1  ⇔  x ≤ ⌊(len − 1 + p − k)/s⌋.
    let hi = if len + pad > k { ((len - 1 + pad - k) / stride + 1).min(out_len) } else { 0 };
    let hi = hi.max(lo);
    // An empty range reads nothing; its start may lie past the input (a 1-pixel row
    // padded by 1 with stride 4 gives 3), and the callers slice `src[first_in..]`.
    let first_in = if hi > lo { (lo * stride + k).saturating_sub(pad) } else { 0 };
    ValidRange { lo, hi, first_in }
}

/// Lowers `images` consecutive images of `input` (`images × C × H × W`) into `cols`
/// (row-major `(C·KH·KW) × (images·OH·OW)`, overwritten). Lengths are the caller's
/// responsibility (checked by the public entry points).
pub(super) fn lower(g: &ConvGeometry, input: &[f32], images: usize, cols: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let plane_len = g.in_h * g.in_w;
    let ncols = images * oh * ow;
    let (s, p) = (g.stride, g.pad);
    for c in 0..g.in_c {
        for ky in 0..g.kh {
            let ys = valid_range(oh, g.in_h, ky, s, p);
            for kx in 0..g.kw {
                let xs = valid_range(ow, g.in_w, kx, s, p);
                let row = (c * g.kh + ky) * g.kw + kx;
                let dst_row = &mut cols[row * ncols..(row + 1) * ncols];
                for (n, dst_img) in dst_row.chunks_exact_mut(oh * ow).enumerate() {
                    let plane = &input[(n * g.in_c + c) * plane_len..][..plane_len];
                    // Output rows that read the top or bottom padding are all zero.
                    dst_img[..ys.lo * ow].fill(0.0);
                    dst_img[ys.hi * ow..].fill(0.0);
                    for (j, dst) in dst_img[ys.lo * ow..ys.hi * ow].chunks_exact_mut(ow).enumerate() {
                        let src = &plane[(ys.first_in + j * s) * g.in_w..][..g.in_w];
                        dst[..xs.lo].fill(0.0);
                        dst[xs.hi..].fill(0.0);
                        let dst = &mut dst[xs.lo..xs.hi];
                        if s == 1 {
                            copy_short(dst, &src[xs.first_in..xs.first_in + dst.len()]);
                        } else {
                            for (d, v) in dst.iter_mut().zip(src[xs.first_in..].iter().step_by(s)) {
                                *d = *v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`lower`]: adds (`+=`) every element of `cols` (row-major
/// `(C·KH·KW) × (images·OH·OW)`) into the input pixel it was read from, in
/// `grad_input` (`images × C × H × W`). Padding positions are dropped.
pub(super) fn raise_add(g: &ConvGeometry, cols: &[f32], images: usize, grad_input: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let plane_len = g.in_h * g.in_w;
    let ncols = images * oh * ow;
    let (s, p) = (g.stride, g.pad);
    for c in 0..g.in_c {
        for ky in 0..g.kh {
            let ys = valid_range(oh, g.in_h, ky, s, p);
            for kx in 0..g.kw {
                let xs = valid_range(ow, g.in_w, kx, s, p);
                let row = (c * g.kh + ky) * g.kw + kx;
                let src_row = &cols[row * ncols..(row + 1) * ncols];
                for (n, src_img) in src_row.chunks_exact(oh * ow).enumerate() {
                    let plane = &mut grad_input[(n * g.in_c + c) * plane_len..][..plane_len];
                    for (j, src) in src_img[ys.lo * ow..ys.hi * ow].chunks_exact(ow).enumerate() {
                        let dst = &mut plane[(ys.first_in + j * s) * g.in_w..][..g.in_w];
                        let src = &src[xs.lo..xs.hi];
                        if s == 1 {
                            for (d, v) in dst[xs.first_in..xs.first_in + src.len()].iter_mut().zip(src) {
                                *d += *v;
                            }
                        } else {
                            for (d, v) in dst[xs.first_in..].iter_mut().step_by(s).zip(src) {
                                *d += *v;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_range;

    /// The range agrees with a per-element bounds test for every small case.
    #[test]
    fn valid_range_matches_elementwise_test() {
        for len in 1..9 {
            for k in 0..6 {
                for stride in 1..4 {
                    for pad in 0..4 {
                        if len + 2 * pad < k + 1 {
                            continue;
                        }
                        let out_len = (len + 2 * pad - (k + 1)) / stride + 1;
                        // Any tap k of a kernel of size ≥ k + 1 gives this output length or more; test
                        // against the output length of a (k + 1)-wide kernel and of a wider one.
                        for out_len in [out_len, out_len + 2] {
                            let r = valid_range(out_len, len, k, stride, pad);
                            for x in 0..out_len {
                                let pos = (x * stride + k) as isize - pad as isize;
                                let inside = pos >= 0 && (pos as usize) < len;
                                assert_eq!(
                                    inside,
                                    (r.lo..r.hi).contains(&x),
                                    "len {len} k {k} s {stride} p {pad} x {x}"
                                );
                                if x == r.lo && inside {
                                    assert_eq!(r.first_in, pos as usize);
                                }
                            }
                            // Callers slice the input row from `first_in`, even for an empty range.
                            assert!(r.first_in < len, "len {len} k {k} s {stride} p {pad}");
                        }
                    }
                }
            }
        }
    }
}
