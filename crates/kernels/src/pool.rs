//! 2-D max over non-overlapping 2 × 2 windows, with the position of each maximum, and
//! its adjoint (scatter a value per window to that position).
//!
//! Dimension legend: `P` planes, `H × W` a plane, `OH = ⌊H / 2⌋`, `OW = ⌊W / 2⌋`.
//! Layouts: `input`/`dinput` `P × H × W`, `out`/`argmax`/`dout`/`gate` `P × OH × OW`,
//! all row-major. A trailing row or column that fills no window is not read (and is
//! written as 0 by the adjoint).
//!
//! The vector paths handle `L` windows of one row of windows at once (`L` = 16 with
//! AVX-512, 8 with AVX2): the two input rows of the windows are loaded as `2·L`
//! consecutive floats each and split into even and odd columns by shuffles, then a
//! chain of compare-and-blend picks the maximum; the row's last `< L` windows run
//! through masked loads and stores. Each output is computed by the same chain of
//! strict `>` comparisons as the scalar path (`_CMP_GT_OQ` is false for NaN, like `>`),
//! so every path gives the same bits.

use crate::KernelError;

/// Checks `a.len() = expected`.
fn check_len(name: &'static str, len: usize, expected: usize) -> Result<(), KernelError> {
    if len == expected { Ok(()) } else { Err(KernelError::BadLength { name, len, expected }) }
}

/// Planes `P` of `input_len` floats of `h × w`, after checking the window fits.
fn planes(input_len: usize, (h, w): (usize, usize)) -> Result<usize, KernelError> {
    if h < 2 || w < 2 {
        return Err(KernelError::BadGeometry(format!("a 2 × 2 window does not fit a {h} × {w} plane")));
    }
    if !input_len.is_multiple_of(h * w) {
        return Err(KernelError::BadLength {
            name: "input",
            len: input_len,
            expected: input_len / (h * w) * h * w,
        });
    }
    Ok(input_len / (h * w))
}

/// `out[p, y, x] = max` of the window `input[p, 2y..2y+2, 2x..2x+2]`, and
/// `argmax[p, y, x]` its position in the plane, `iy·W + ix`, the first maximum in
/// row-major window order (comparisons are strict `>`, so a NaN wins a window only when
/// it comes first). `out` and `argmax` are overwritten.
///
/// # Errors
/// [`KernelError::BadGeometry`] when `h` or `w` is below 2; [`KernelError::BadLength`]
/// when a buffer does not hold whole planes of the shape.
pub fn max_pool_2x2(
    input: &[f32],
    (h, w): (usize, usize),
    out: &mut [f32],
    argmax: &mut [u32],
) -> Result<(), KernelError> {
    let p = planes(input.len(), (h, w))?;
    let (oh, ow) = (h / 2, w / 2);
    check_len("out", out.len(), p * oh * ow)?;
    check_len("argmax", argmax.len(), p * oh * ow)?;
    if u32::try_from(h * w).is_err() {
        return Err(KernelError::BadGeometry(format!("a {h} × {w} plane has positions past u32")));
    }
    let planes =
        input.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)).zip(argmax.chunks_exact_mut(oh * ow));
    for ((plane, out), arg) in planes {
        for (y, (out_row, arg_row)) in out.chunks_exact_mut(ow).zip(arg.chunks_exact_mut(ow)).enumerate() {
            let base = 2 * y * w;
            let r0 = &plane[base..base + 2 * ow];
            let r1 = &plane[base + w..base + w + 2 * ow];
            simd::pool_row(out_row, arg_row, r0, r1, base as u32, w as u32);
        }
    }
    Ok(())
}

/// One row of windows of [`max_pool_2x2`] from its two input rows: `out[x]` and
/// `arg[x]` for `x < out.len()` from `r0[..2·out.len()]` and `r1[..2·out.len()]`, the
/// positions being `base + 2x + {0, 1, w, w + 1}`. The convolution's pooled epilogue
/// runs it on rows still in registers' spill buffer, so that its outputs are those of
/// the separate pass bit for bit.
#[inline(always)]
pub(crate) fn pool_window_row(out: &mut [f32], arg: &mut [u32], r0: &[f32], r1: &[f32], base: u32, w: u32) {
    simd::pool_row(out, arg, r0, r1, base, w);
}

/// The adjoint of [`max_pool_2x2`]: `dinput[p, argmax[p, y, x]] = dout[p, y, x]` and 0
/// everywhere else (windows do not overlap, so nothing is summed). With `gate`, a
/// window passes its value only where `gate[p, y, x] > 0` (a ReLU below the pooling:
/// the pooled values are the ReLU's output at each argmax). `dinput` is overwritten,
/// every element once, so it needs no zeroing. An `argmax` that is not a position in
/// its window writes nothing for that window.
///
/// # Errors
/// As [`max_pool_2x2`], for `dinput`, `dout`, `argmax` and `gate`.
pub fn max_unpool_2x2(
    dout: &[f32],
    argmax: &[u32],
    gate: Option<&[f32]>,
    (h, w): (usize, usize),
    dinput: &mut [f32],
) -> Result<(), KernelError> {
    let p = planes(dinput.len(), (h, w))?;
    let (oh, ow) = (h / 2, w / 2);
    check_len("dout", dout.len(), p * oh * ow)?;
    check_len("argmax", argmax.len(), p * oh * ow)?;
    if let Some(g) = gate {
        check_len("gate", g.len(), p * oh * ow)?;
    }
    if u32::try_from(h * w).is_err() {
        return Err(KernelError::BadGeometry(format!("a {h} × {w} plane has positions past u32")));
    }
    for (i, di) in dinput.chunks_exact_mut(h * w).enumerate() {
        let (d, a) = (&dout[i * oh * ow..][..oh * ow], &argmax[i * oh * ow..][..oh * ow]);
        for y in 0..oh {
            let base = 2 * y * w;
            let (top, bottom) = di[base..base + 2 * w].split_at_mut(w);
            let row = y * ow..(y + 1) * ow;
            // Two copies of the row loop, so that the gate is not tested per window.
            match gate {
                Some(g) => simd::unpool_row::<true>(
                    &mut top[..2 * ow],
                    &mut bottom[..2 * ow],
                    &d[row.clone()],
                    &a[row.clone()],
                    &g[i * oh * ow..][row],
                    base as u32,
                    w as u32,
                ),
                None => simd::unpool_row::<false>(
                    &mut top[..2 * ow],
                    &mut bottom[..2 * ow],
                    &d[row.clone()],
                    &a[row.clone()],
                    &d[row],
                    base as u32,
                    w as u32,
                ),
            }
            // The odd last column fills no window.
            top[2 * ow..].fill(0.0);
            bottom[2 * ow..].fill(0.0);
        }
        // The odd last row fills no window.
        di[2 * oh * w..].fill(0.0);
    }
    Ok(())
}

/// The scalar definitions, which the vector paths reproduce bit for bit; the vector
/// paths also use them for nothing else, so the portable build runs them alone.
mod scalar {
    /// Windows `x = 0 .. out.len()` of one row of windows: `r0`, `r1` are the window
    /// rows (`≥ 2·OW` floats); positions are `base + 2x + {0, 1, w, w + 1}`.
    #[cfg_attr(any(target_feature = "avx512f", target_feature = "avx2"), allow(dead_code))]
    pub(super) fn pool_row(out: &mut [f32], arg: &mut [u32], r0: &[f32], r1: &[f32], base: u32, w: u32) {
        for (x, (o, a)) in out.iter_mut().zip(arg.iter_mut()).enumerate() {
            let (t0, t1, b0, b1) = (r0[2 * x], r0[2 * x + 1], r1[2 * x], r1[2 * x + 1]);
            let (mut m, mut i) = (t0, 0);
            if t1 > m {
                (m, i) = (t1, 1);
            }
            if b0 > m {
                (m, i) = (b0, w);
            }
            if b1 > m {
                (m, i) = (b1, w + 1);
            }
            *o = m;
            *a = base + 2 * x as u32 + i;
        }
    }

    /// Windows `x = 0 .. d.len()`: `top`/`bottom` (`2·OW` floats) get `d[x]` (or 0 when
    /// `GATED` and `gate[x] ≤ 0`) at the window's argmax and 0 at its other positions.
    #[cfg_attr(any(target_feature = "avx512f", target_feature = "avx2"), allow(dead_code))]
    pub(super) fn unpool_row<const GATED: bool>(
        top: &mut [f32],
        bottom: &mut [f32],
        d: &[f32],
        a: &[u32],
        gate: &[f32],
        base: u32,
        w: u32,
    ) {
        for x in 0..d.len() {
            let g = if !GATED || gate[x] > 0.0 { d[x] } else { 0.0 };
            let rel = a[x].wrapping_sub(base + 2 * x as u32);
            top[2 * x] = if rel == 0 { g } else { 0.0 };
            top[2 * x + 1] = if rel == 1 { g } else { 0.0 };
            bottom[2 * x] = if rel == w { g } else { 0.0 };
            bottom[2 * x + 1] = if rel == w + 1 { g } else { 0.0 };
        }
    }
}

#[cfg(not(any(target_feature = "avx512f", target_feature = "avx2")))]
use scalar as simd;

/// AVX-512: 16 windows per step; `vpermt2ps` splits 32 floats of a row into even and
/// odd columns (and interleaves them back in the adjoint); tails by masked loads and
/// stores (masked-off lanes are not accessed, so they may lie past the slice).
#[cfg(target_feature = "avx512f")]
mod simd {
    use std::arch::x86_64::*;

    const L: usize = 16;

    /// The lane mask of the first `n ≤ 16` lanes.
    #[inline(always)]
    fn first(n: usize) -> __mmask16 {
        if n >= L { !0 } else { (1u16 << n) - 1 }
    }

    /// See [`super::scalar::pool_row`].
    #[inline(always)]
    pub(super) fn pool_row(out: &mut [f32], arg: &mut [u32], r0: &[f32], r1: &[f32], base: u32, w: u32) {
        let n = out.len();
        assert!(arg.len() == n && r0.len() >= 2 * n && r1.len() >= 2 * n);
        // SAFETY: the intrinsics need AVX-512F, which this build enables (the module's cfg);
        // every load and store is masked to the lanes noted beside it, all inside the
        // slices by the assert above (masked-off lanes are not accessed).
        unsafe {
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
            let (one, below, below1) =
                (_mm512_set1_epi32(1), _mm512_set1_epi32(w as i32), _mm512_set1_epi32(w as i32 + 1));
            let mut x0 = 0;
            while x0 < n {
                let m = (n - x0).min(L);
                let (lo, hi, o) = (first(2 * m), first((2 * m).saturating_sub(L)), first(m));
                let load = |r: &[f32]| {
                    let p = r.as_ptr().wrapping_add(2 * x0);
                    // Lanes of `lo` are `r[2x0 .. 2x0 + min(2m, 16)]` and those of `hi`
                    // `r[2x0 + 16 .. 2x0 + 2m]`, inside `r[..2n]`; masked-off lanes are not read.
                    let (a, b) = (_mm512_maskz_loadu_ps(lo, p), _mm512_maskz_loadu_ps(hi, p.wrapping_add(L)));
                    (_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b))
                };
                let ((t0, t1), (b0, b1)) = (load(r0), load(r1));
                let (mut mx, mut i) = (t0, _mm512_setzero_si512());
                for (v, at) in [(t1, one), (b0, below), (b1, below1)] {
                    let k = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, mx);
                    mx = _mm512_mask_blend_ps(k, mx, v);
                    i = _mm512_mask_blend_epi32(k, i, at);
                }
                let pos = _mm512_add_epi32(
                    _mm512_add_epi32(_mm512_set1_epi32((base + 2 * x0 as u32) as i32), even),
                    i,
                );
                // Lanes of `o` are `out[x0 .. x0 + m]` and `arg[x0 .. x0 + m]`, in bounds.
                {
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(x0), o, mx);
                    _mm512_mask_storeu_epi32(arg.as_mut_ptr().add(x0).cast::<i32>(), o, pos);
                }
                x0 += m;
            }
        }
    }

    /// See [`super::scalar::unpool_row`].
    #[inline(always)]
    pub(super) fn unpool_row<const GATED: bool>(
        top: &mut [f32],
        bottom: &mut [f32],
        d: &[f32],
        a: &[u32],
        gate: &[f32],
        base: u32,
        w: u32,
    ) {
        let n = d.len();
        assert!(a.len() == n && gate.len() == n && top.len() >= 2 * n && bottom.len() >= 2 * n);
        // SAFETY: the intrinsics need AVX-512F, which this build enables (the module's cfg);
        // every load and store is masked to the lanes noted beside it, all inside the
        // slices by the assert above (masked-off lanes are not accessed).
        unsafe {
            let lanes2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            // Interleave even (a) and odd (b) columns: lanes 0..16 and 16..32 of the pairs.
            let lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let hi_idx = _mm512_add_epi32(lo_idx, _mm512_set1_epi32(8));
            let (one, below, below1) =
                (_mm512_set1_epi32(1), _mm512_set1_epi32(w as i32), _mm512_set1_epi32(w as i32 + 1));
            let zero = _mm512_setzero_ps();
            let mut x0 = 0;
            while x0 < n {
                let m = (n - x0).min(L);
                let (lo, hi, o) = (first(2 * m), first((2 * m).saturating_sub(L)), first(m));
                // Lanes of `o` are `d`, `a`, `gate` at `x0 .. x0 + m`, in bounds.
                let (mut g, at) = {
                    (
                        _mm512_maskz_loadu_ps(o, d.as_ptr().add(x0)),
                        _mm512_maskz_loadu_epi32(o, a.as_ptr().add(x0).cast::<i32>()),
                    )
                };
                if GATED {
                    let v = _mm512_maskz_loadu_ps(o, gate.as_ptr().add(x0));
                    g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, zero), g);
                }
                let rel = _mm512_sub_epi32(
                    at,
                    _mm512_add_epi32(_mm512_set1_epi32((base + 2 * x0 as u32) as i32), lanes2),
                );
                let pick = |at| _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(rel, at), g);
                let store = |row: &mut [f32], even: __m512, odd: __m512| {
                    let p = row.as_mut_ptr().wrapping_add(2 * x0);
                    // Lanes of `lo` are `row[2x0 .. 2x0 + min(2m, 16)]` and those of `hi`
                    // `row[2x0 + 16 .. 2x0 + 2m]`, inside `row[..2n]`; masked-off lanes are not written.
                    {
                        _mm512_mask_storeu_ps(p, lo, _mm512_permutex2var_ps(even, lo_idx, odd));
                        _mm512_mask_storeu_ps(
                            p.wrapping_add(L),
                            hi,
                            _mm512_permutex2var_ps(even, hi_idx, odd),
                        );
                    }
                };
                store(top, pick(_mm512_setzero_si512()), pick(one));
                store(bottom, pick(below), pick(below1));
                x0 += m;
            }
        }
    }
}

/// AVX2: 8 windows per step; `vshufps` + `vpermpd` split 16 floats of a row into even and
/// odd columns, `vunpck{l,h}ps` + `vperm2f128` interleave them back; tails by
/// `vmaskmovps` (masked-off lanes are not accessed, so they may lie past the slice).
#[cfg(all(not(target_feature = "avx512f"), target_feature = "avx2"))]
mod simd {
    use std::arch::x86_64::*;

    const L: usize = 8;

    /// The lane mask (all-ones lanes) of the first `n` lanes (`n ≥ 8`: all).
    #[inline(always)]
    fn first(n: usize) -> __m256i {
        // SAFETY: the intrinsics need AVX2, which this build enables (the module's cfg).
        unsafe {
            _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(L) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
        }
    }

    /// `(a0 a2 … a6 b0 … b6, a1 a3 … b7)`: even and odd columns of 16 consecutive floats.
    #[inline(always)]
    fn split(a: __m256, b: __m256) -> (__m256, __m256) {
        // SAFETY: the intrinsics need AVX2, which this build enables (the module's cfg).
        unsafe {
            let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
            let fix =
                |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
            (fix(e), fix(o))
        }
    }

    /// See [`super::scalar::pool_row`].
    #[inline(always)]
    pub(super) fn pool_row(out: &mut [f32], arg: &mut [u32], r0: &[f32], r1: &[f32], base: u32, w: u32) {
        let n = out.len();
        assert!(arg.len() == n && r0.len() >= 2 * n && r1.len() >= 2 * n);
        // SAFETY: the intrinsics need AVX2, which this build enables (the module's cfg);
        // every load and store is masked to the lanes noted beside it, all inside the
        // slices by the assert above (masked-off lanes are not accessed).
        unsafe {
            let lanes2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
            let (one, below, below1) =
                (_mm256_set1_epi32(1), _mm256_set1_epi32(w as i32), _mm256_set1_epi32(w as i32 + 1));
            let mut x0 = 0;
            while x0 < n {
                let m = (n - x0).min(L);
                let (lo, hi, o) = (first(2 * m), first((2 * m).saturating_sub(L)), first(m));
                let load = |r: &[f32]| {
                    let p = r.as_ptr().wrapping_add(2 * x0);
                    // Lanes of `lo` are `r[2x0 .. 2x0 + min(2m, 8)]` and those of `hi`
                    // `r[2x0 + 8 .. 2x0 + 2m]`, inside `r[..2n]`; masked-off lanes are not read.
                    let (a, b) = (_mm256_maskload_ps(p, lo), _mm256_maskload_ps(p.wrapping_add(L), hi));
                    split(a, b)
                };
                let ((t0, t1), (b0, b1)) = (load(r0), load(r1));
                let (mut mx, mut i) = (t0, _mm256_setzero_ps());
                for (v, at) in [(t1, one), (b0, below), (b1, below1)] {
                    let k = _mm256_cmp_ps::<_CMP_GT_OQ>(v, mx);
                    mx = _mm256_blendv_ps(mx, v, k);
                    i = _mm256_blendv_ps(i, _mm256_castsi256_ps(at), k);
                }
                let start = _mm256_add_epi32(_mm256_set1_epi32((base + 2 * x0 as u32) as i32), lanes2);
                let pos = _mm256_add_epi32(start, _mm256_castps_si256(i));
                // Lanes of `o` are `out[x0 .. x0 + m]` and `arg[x0 .. x0 + m]`, in bounds.
                {
                    _mm256_maskstore_ps(out.as_mut_ptr().add(x0), o, mx);
                    _mm256_maskstore_epi32(arg.as_mut_ptr().add(x0).cast::<i32>(), o, pos);
                }
                x0 += m;
            }
        }
    }

    /// See [`super::scalar::unpool_row`].
    #[inline(always)]
    pub(super) fn unpool_row<const GATED: bool>(
        top: &mut [f32],
        bottom: &mut [f32],
        d: &[f32],
        a: &[u32],
        gate: &[f32],
        base: u32,
        w: u32,
    ) {
        let n = d.len();
        assert!(a.len() == n && gate.len() == n && top.len() >= 2 * n && bottom.len() >= 2 * n);
        // SAFETY: the intrinsics need AVX2, which this build enables (the module's cfg);
        // every load and store is masked to the lanes noted beside it, all inside the
        // slices by the assert above (masked-off lanes are not accessed).
        unsafe {
            let lanes2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
            let (one, below, below1) =
                (_mm256_set1_epi32(1), _mm256_set1_epi32(w as i32), _mm256_set1_epi32(w as i32 + 1));
            let zero = _mm256_setzero_ps();
            let mut x0 = 0;
            while x0 < n {
                let m = (n - x0).min(L);
                let (lo, hi, o) = (first(2 * m), first((2 * m).saturating_sub(L)), first(m));
                // Lanes of `o` are `d`, `a`, `gate` at `x0 .. x0 + m`, in bounds.
                let (mut g, at) = {
                    (
                        _mm256_maskload_ps(d.as_ptr().add(x0), o),
                        _mm256_maskload_epi32(a.as_ptr().add(x0).cast::<i32>(), o),
                    )
                };
                if GATED {
                    let v = { _mm256_maskload_ps(gate.as_ptr().add(x0), o) };
                    g = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, zero), g);
                }
                let rel = _mm256_sub_epi32(
                    at,
                    _mm256_add_epi32(_mm256_set1_epi32((base + 2 * x0 as u32) as i32), lanes2),
                );
                let pick = |at| _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(rel, at)), g);
                let store = |row: &mut [f32], even: __m256, odd: __m256| {
                    let (l, h) = (_mm256_unpacklo_ps(even, odd), _mm256_unpackhi_ps(even, odd));
                    let p = row.as_mut_ptr().wrapping_add(2 * x0);
                    // Lanes of `lo` are `row[2x0 .. 2x0 + min(2m, 8)]` and those of `hi`
                    // `row[2x0 + 8 .. 2x0 + 2m]`, inside `row[..2n]`; masked-off lanes are not written.
                    {
                        _mm256_maskstore_ps(p, lo, _mm256_permute2f128_ps::<0x20>(l, h));
                        _mm256_maskstore_ps(p.wrapping_add(L), hi, _mm256_permute2f128_ps::<0x31>(l, h));
                    }
                };
                store(top, pick(_mm256_setzero_si256()), pick(one));
                store(bottom, pick(below), pick(below1));
                x0 += m;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path against the scalar definition: odd and even sizes, rows of windows
    /// shorter and longer than a vector, ties, NaN and negative zero.
    #[test]
    fn matches_the_scalar_definition_bit_for_bit() {
        for (h, w) in [(2, 2), (3, 5), (5, 7), (28, 28), (10, 10), (6, 34), (4, 66), (7, 3)] {
            let p = 3;
            let mut input: Vec<f32> = (0..p * h * w).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
            input[1] = f32::NAN;
            input[w + 2] = f32::NAN;
            if input.len() > 9 {
                input[9] = -0.0;
            }
            let (oh, ow) = (h / 2, w / 2);
            let mut out = vec![0.0; p * oh * ow];
            let mut arg = vec![0; p * oh * ow];
            max_pool_2x2(&input, (h, w), &mut out, &mut arg).unwrap();
            let (mut e_out, mut e_arg) = (vec![0.0f32; out.len()], vec![0u32; arg.len()]);
            for q in 0..p {
                for y in 0..oh {
                    let base = 2 * y * w;
                    let plane = &input[q * h * w..(q + 1) * h * w];
                    let o = q * oh * ow + y * ow;
                    scalar::pool_row(
                        &mut e_out[o..o + ow],
                        &mut e_arg[o..o + ow],
                        &plane[base..],
                        &plane[base + w..],
                        base as u32,
                        w as u32,
                    );
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&out), bits(&e_out), "{h} × {w}");
            assert_eq!(arg, e_arg, "{h} × {w}");

            let dout: Vec<f32> = (0..out.len()).map(|i| i as f32 + 1.0).collect();
            for gate in [None, Some(&out[..])] {
                let mut dinp = vec![f32::NAN; input.len()];
                max_unpool_2x2(&dout, &arg, gate, (h, w), &mut dinp).unwrap();
                let mut expect = vec![0.0f32; input.len()];
                for (o, (&d, &a)) in dout.iter().zip(&arg).enumerate() {
                    if gate.is_none_or(|g| g[o] > 0.0) {
                        expect[o / (oh * ow) * h * w + a as usize] = d;
                    }
                }
                assert_eq!(bits(&dinp), bits(&expect), "{h} × {w}, gated {}", gate.is_some());
            }
        }
    }

    #[test]
    fn rejects_shapes_that_do_not_fit() {
        let mut out = vec![0.0; 4];
        let mut arg = vec![0; 4];
        assert!(matches!(
            max_pool_2x2(&[0.0; 16], (1, 16), &mut out, &mut arg),
            Err(KernelError::BadGeometry(_))
        ));
        assert!(matches!(
            max_pool_2x2(&[0.0; 15], (4, 4), &mut out, &mut arg),
            Err(KernelError::BadLength { .. })
        ));
        assert!(matches!(
            max_pool_2x2(&[0.0; 16], (4, 4), &mut out[..3], &mut arg),
            Err(KernelError::BadLength { .. })
        ));
        let mut dinp = vec![0.0; 16];
        assert!(matches!(
            max_unpool_2x2(&out, &arg, Some(&out[..2]), (4, 4), &mut dinp),
            Err(KernelError::BadLength { .. })
        ));
    }
}
