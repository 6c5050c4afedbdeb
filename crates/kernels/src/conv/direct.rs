//! Direct convolution for stride 1, vectorised over the output row: the path for
//! shapes where im2col is a poor fit, LeNet's conv1 above all (`C = 1`, `O = 6`, 5×5
//! on 28×28: as a GEMM `50176 × 25 × 6`, too thin for any BLAS to block well).
//!
//! Each image is first copied into a zero-bordered buffer (`C × HP × WP`, the padding
//! made explicit and the rows widened so that every vector load stays inside), so the
//! kernels never test a pixel. A tap `(c, ky, kx)` is then just an offset
//! `c·HP·WP + ky·WP + kx` into that buffer, and the lanes of a vector are `L`
//! consecutive outputs `x` of one row (`L` = 16 with AVX-512, 8 otherwise; a 28-wide
//! row is two vectors, the last lanes computed and dropped).
//!
//! - Forward: a register tile of `OB` output channels × `NV` vectors of one row; per
//!   tap, `NV` loads of the input and `OB` broadcast weights feed `OB·NV` FMAs; bias
//!   and ReLU are applied on the way out.
//! - Weight gradient, when the output channels are one or two vectors (LeNet's conv2:
//!   16) and the kernel is 3 or 5 wide: the lanes run over the channels instead (`weight_gradient_by_channel`), so a
//!   10-wide output row does not leave 6 of 16 lanes idle; a tile of whole kernel rows
//!   takes per position one dY vector and one broadcast input per tap.
//! - Weight gradient otherwise: a register tile of `OB` channels × `TB` taps, each lane summing
//!   `dY[o, y, x]·in[y + ky, x + kx]` over the rows and images of a run, reduced across
//!   lanes once per run (`reduce_add`, a fixed shuffle tree). `dY` is copied into rows padded with zeros to whole vectors
//!   so the lanes past the row contribute nothing.
//! - Input gradient: the forward kernel on `dY` with the weights transposed and flipped
//!   and padding `K − 1 − p` (a "full" convolution). Where most of that tile's
//!   products would be with the padding (small maps: LeNet's conv2, 51%), whole groups
//!   of `L` images run with the lanes over images instead (`grad_input_by_image`),
//!   which skips the taps that meet only padding; the same bits.

use super::lowered::{Partial, bias_partial};
use super::{ConvGeometry, copy_short, sum_in_order};
use crate::gemm::Parallelism;
use crate::pool::pool_window_row;
use crate::reuse::Reused;
use crate::team;
use crate::transpose::transpose_into;

mod grad_input_by_image;
#[cfg(target_feature = "avx512f")]
mod pooled_by_channel;

#[cfg(target_feature = "avx512f")]
type V = wide::f32x16;
#[cfg(not(target_feature = "avx512f"))]
type V = wide::f32x8;

/// Lanes of a vector.
const L: usize = size_of::<V>() / size_of::<f32>();

/// Register tiles, sized so accumulators + operands fit the 32 zmm registers of
/// AVX-512 or the 16 ymm of AVX2: forward `OB × RY × NV` accumulators (`RY` rows),
/// `RY·NV` input vectors and one broadcast — `RY_FEW` rows when a tile has at most
/// `FEW_VECTORS` vectors per row (`OB·NV`, a pruned layer's 2–4 channels), so that each
/// input vector loaded still feeds several FMAs; weight gradient `OB × TB` accumulators, `OB` dY vectors, one input.
#[cfg(target_feature = "avx512f")]
mod tile {
    pub(super) const FWD_RY: usize = 2;
    pub(super) const FWD_FEW_VECTORS: usize = 4;
    pub(super) const FWD_RY_FEW: usize = 4;
    pub(super) const FWD_OB_ONE_VECTOR: usize = 8;
    pub(super) const FWD_OB_TWO_VECTORS: usize = 6;
    pub(super) const DW_OB: usize = 6;
    pub(super) const DW_TB: usize = 4;
    pub(super) const DWC_ACC: usize = 24;
}
#[cfg(not(target_feature = "avx512f"))]
mod tile {
    pub(super) const FWD_RY: usize = 1;
    pub(super) const FWD_FEW_VECTORS: usize = 4;
    pub(super) const FWD_RY_FEW: usize = 2;
    pub(super) const FWD_OB_ONE_VECTOR: usize = 8;
    pub(super) const FWD_OB_TWO_VECTORS: usize = 6;
    pub(super) const DW_OB: usize = 3;
    pub(super) const DW_TB: usize = 3;
    pub(super) const DWC_ACC: usize = 12;
}

/// Images whose weight gradients one worker sums before handing back a partial; fixed,
/// so the order of the final sum does not depend on the thread count.
const DW_RUN_IMAGES: usize = 4;

/// The shape of one stride-1 direct convolution with its own padding per axis (the
/// input-gradient pass needs `KH − 1 − p` and `KW − 1 − p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    pad_h: usize,
    pad_w: usize,
    oh: usize,
    ow: usize,
    /// Vectors per row tile (1 or 2).
    nv: usize,
    /// Row of the padded buffer: `⌈OW / (NV·L)⌉·NV·L + KW − 1 ≥ W + 2·pad_w`.
    wp: usize,
    /// Rows of the padded buffer per channel: `OH + KH − 1 = H + 2·pad_h`.
    hp: usize,
}

impl Plan {
    /// `None` when the padded input is smaller than the kernel.
    #[allow(clippy::too_many_arguments)]
    fn new(
        c: usize,
        h: usize,
        w: usize,
        o: usize,
        kh: usize,
        kw: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> Option<Self> {
        let oh = (h + 2 * pad_h).checked_sub(kh)? + 1;
        let ow = (w + 2 * pad_w).checked_sub(kw)? + 1;
        let nv = if ow > L { 2 } else { 1 };
        let wp = ow.div_ceil(nv * L) * nv * L + kw - 1;
        Some(Self { c, h, w, o, kh, kw, pad_h, pad_w, oh, ow, nv, wp, hp: oh + kh - 1 })
    }

    fn from_geometry(g: &ConvGeometry) -> Option<Self> {
        (g.stride == 1).then(|| Self::new(g.in_c, g.in_h, g.in_w, g.out_c, g.kh, g.kw, g.pad, g.pad))?
    }

    /// The largest tap offset, `(C−1)·HP·WP + (KH−1)·WP + KW − 1` (for `C ≥ 1`).
    fn last_tap(&self) -> usize {
        ((self.c - 1) * self.hp + self.kh - 1) * self.wp + self.kw - 1
    }

    /// Elements of one padded image, `C·HP·WP`.
    fn padded_len(&self) -> usize {
        self.c * self.hp * self.wp
    }

    /// Width of a row of dY padded to whole row tiles (`WP − (KW − 1)`).
    fn gw(&self) -> usize {
        self.wp + 1 - self.kw
    }

    /// Tap offsets into a padded image, in `(c, ky, kx)` order (the weight layout).
    fn taps(&self) -> Vec<usize> {
        let mut taps = Vec::with_capacity(self.c * self.kh * self.kw);
        for c in 0..self.c {
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    taps.push((c * self.hp + ky) * self.wp + kx);
                }
            }
        }
        taps
    }

    /// Copies one image (`C × H × W`) into the interior of `dst` (`C × HP × WP`),
    /// whose border was zeroed when it was allocated and is never written.
    fn pad_into(&self, img: &[f32], dst: &mut [f32]) {
        for (plane, dplane) in img.chunks_exact(self.h * self.w).zip(dst.chunks_exact_mut(self.hp * self.wp))
        {
            for (row, drow) in
                plane.chunks_exact(self.w).zip(dplane[self.pad_h * self.wp..].chunks_mut(self.wp))
            {
                copy_short(&mut drow[self.pad_w..self.pad_w + self.w], row);
            }
        }
    }
}

/// Whether [`forward`] handles `g`: stride 1.
pub(super) fn supports_forward(g: &ConvGeometry) -> bool {
    Plan::from_geometry(g).is_some()
}

/// Whether [`backward`] handles `g` (with an input gradient when `with_input`): stride 1,
/// and for the input gradient a padding no larger than `K − 1` on each axis.
pub(super) fn supports_backward(g: &ConvGeometry, with_input: bool) -> bool {
    supports_forward(g) && (!with_input || (g.pad < g.kh && g.pad < g.kw))
}

/// Forward over the batch for a geometry accepted by [`supports_forward`]; lengths
/// have been checked by the caller. `output` is overwritten: the whole output, or only
/// its 2 × 2 max pooling, done in the tile's epilogue so that the convolution's own
/// output is never written (this needs a non-empty image and `OH, OW ≥ 2`).
pub(super) fn forward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    output: Output<'_>,
    parallelism: Parallelism,
) {
    let Some(plan) = Plan::from_geometry(g) else { return };
    let wt = transpose_weights(weight, g.out_c, g.col_rows());
    run_forward(&plan, input, &wt, bias, relu, output, parallelism);
}

/// Where the forward kernel writes: the whole output, or only its 2 × 2 max pooling
/// (with the window positions of the maxima unless `argmax` is empty).
pub(super) enum Output<'a> {
    /// `N × O × OH × OW`.
    Full(&'a mut [f32]),
    /// `N × O × ⌊OH/2⌋ × ⌊OW/2⌋` each, `argmax` possibly empty.
    Pooled { pooled: &'a mut [f32], argmax: &'a mut [u32] },
}

/// `O × K` → `K × O`, so the `OB` weights of one tap are adjacent.
fn transpose_weights(weight: &[f32], o: usize, k: usize) -> Vec<f32> {
    let mut wt = vec![0.0f32; o * k];
    for (oi, row) in weight.chunks_exact(k).enumerate() {
        for (t, &v) in row.iter().enumerate() {
            wt[t * o + oi] = v;
        }
    }
    wt
}

/// The forward kernel over every image of `input` (`N × C × H × W` for `plan`), one
/// image per task; `wt` is `K × O`; `output` overwritten. A pooled output needs
/// `C ≥ 1` and `OH, OW ≥ 2`.
fn run_forward(
    plan: &Plan,
    input: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    output: Output<'_>,
    parallelism: Parallelism,
) {
    let in_img = plan.c * plan.h * plan.w;
    let (output, argmax, pooled) = match output {
        Output::Full(out) => (out, <&mut [u32]>::default(), false),
        Output::Pooled { pooled, argmax } => (pooled, argmax, true),
    };
    let out_img = if pooled { plan.o * (plan.oh / 2) * (plan.ow / 2) } else { plan.o * plan.oh * plan.ow };
    if in_img == 0 || out_img == 0 {
        assert!(!pooled, "a pooled output needs a non-empty image");
        output.fill(0.0);
        if let Some(b) = bias {
            // No taps: the output is the bias (then ReLU).
            for img in output.chunks_exact_mut(out_img.max(1)) {
                for (row, &bo) in img.chunks_exact_mut(plan.oh * plan.ow).zip(b) {
                    row.fill(if relu { bo.max(0.0) } else { bo });
                }
            }
        }
        return;
    }
    let taps = plan.taps();
    let image = |padded: &mut Vec<f32>, ((img, out), arg): ((&[f32], &mut [f32]), &mut [u32])| {
        plan.pad_into(img, padded);
        let args = FwdArgs { plan, padded, wt, taps: &taps, bias, relu, pooled, o0: 0 };
        #[cfg(target_feature = "avx512f")]
        if pooled && pooled_by_channel::supports(plan) {
            pooled_by_channel::image(&args, out, arg);
            return;
        }
        forward_image(args, out, arg);
    };
    // One zero-bordered buffer per thread, kept for the next call of the same plan.
    let new_padded = || Reused::take(*plan, || Padded(vec![0.0f32; plan.padded_len()]));
    let images = input.chunks_exact(in_img).zip(output.chunks_exact_mut(out_img));
    // Per image its part of `argmax`, or nothing.
    let args: Vec<&mut [u32]> = if argmax.is_empty() {
        (0..input.len() / in_img).map(|_| <&mut [u32]>::default()).collect()
    } else {
        argmax.chunks_exact_mut(out_img).collect()
    };
    if parallelism == Parallelism::Threads && input.len() > in_img {
        // One zero-bordered buffer per thread: every image overwrites its interior.
        team::map_init(images.zip(args).collect(), new_padded, |padded, _, p| image(&mut padded.0, p));
    } else {
        let mut padded = new_padded();
        images.zip(args).for_each(|p| image(&mut padded.0, p));
    }
}

/// All output channels of one padded image (`args.o0` is ignored), in tiles of `OB`
/// channels × `RY` rows; `out` (and `arg`) are the image's part of the output.
fn forward_image(mut args: FwdArgs<'_>, out: &mut [f32], arg: &mut [u32]) {
    let plan = args.plan;
    let ob_max = if plan.nv == 1 { tile::FWD_OB_ONE_VECTOR } else { tile::FWD_OB_TWO_VECTORS };
    let mut o0 = 0;
    while o0 < plan.o {
        let ob = ob_max.min(plan.o - o0);
        args.o0 = o0;
        match plan.nv {
            1 => fwd_rows::<1>(ob, &args, out, arg),
            _ => fwd_rows::<2>(ob, &args, out, arg),
        }
        o0 += ob;
    }
}

/// Every row of `OB` channels: in steps of `FWD_RY_FEW` rows when the tile is narrow
/// (`OB·NV ≤ FWD_FEW_VECTORS`), then of `FWD_RY` rows, then one at a time. Each output
/// sums its taps in the same order whatever the tile, so the bits do not change.
/// Pooled, the rows run in pairs (both even tile heights) and an odd last row, which
/// no window reads, not at all.
fn fwd_rows<const NV: usize>(ob: usize, args: &FwdArgs<'_>, out: &mut [f32], arg: &mut [u32]) {
    let oh = args.plan.oh;
    let tall = if ob * NV <= tile::FWD_FEW_VECTORS { round_down(oh, tile::FWD_RY_FEW) } else { 0 };
    if args.pooled {
        fwd_dispatch_few::<NV, { tile::FWD_RY_FEW }, true>(ob, args, 0..tall, out, arg);
        let paired = tall + round_down(oh - tall, 2);
        fwd_dispatch::<NV, 2, true>(ob, args, tall..paired, out, arg);
        return;
    }
    fwd_dispatch_few::<NV, { tile::FWD_RY_FEW }, false>(ob, args, 0..tall, out, arg);
    let paired = tall + round_down(oh - tall, tile::FWD_RY);
    fwd_dispatch::<NV, { tile::FWD_RY }, false>(ob, args, tall..paired, out, arg);
    fwd_dispatch::<NV, 1, false>(ob, args, paired..oh, out, arg);
}

/// [`fwd_dispatch`] for the narrow tiles of [`fwd_rows`] (`OB ≤ FWD_FEW_VECTORS`).
fn fwd_dispatch_few<const NV: usize, const RY: usize, const POOL: bool>(
    ob: usize,
    a: &FwdArgs<'_>,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
    arg: &mut [u32],
) {
    if rows.is_empty() {
        return;
    }
    match ob {
        1 => fwd_tile::<1, NV, RY, POOL>(a, rows, out, arg),
        2 => fwd_tile::<2, NV, RY, POOL>(a, rows, out, arg),
        3 => fwd_tile::<3, NV, RY, POOL>(a, rows, out, arg),
        _ => fwd_tile::<4, NV, RY, POOL>(a, rows, out, arg),
    }
}

/// `x` rounded down to a multiple of `m` (a function, not an inline `%`, so that the
/// builds where `m` is the constant 1 compile without a `modulo_one` lint).
fn round_down(x: usize, m: usize) -> usize {
    x - x % m
}

/// What the forward tile kernel reads.
struct FwdArgs<'a> {
    plan: &'a Plan,
    padded: &'a [f32],
    wt: &'a [f32],
    taps: &'a [usize],
    bias: Option<&'a [f32]>,
    relu: bool,
    /// Whether the output is the 2 × 2 max pooling of the convolution's ([`Output`]).
    pooled: bool,
    o0: usize,
}

fn fwd_dispatch<const NV: usize, const RY: usize, const POOL: bool>(
    ob: usize,
    a: &FwdArgs<'_>,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
    arg: &mut [u32],
) {
    if rows.is_empty() {
        return;
    }
    match ob {
        1 => fwd_tile::<1, NV, RY, POOL>(a, rows, out, arg),
        2 => fwd_tile::<2, NV, RY, POOL>(a, rows, out, arg),
        3 => fwd_tile::<3, NV, RY, POOL>(a, rows, out, arg),
        4 => fwd_tile::<4, NV, RY, POOL>(a, rows, out, arg),
        5 => fwd_tile::<5, NV, RY, POOL>(a, rows, out, arg),
        6 => fwd_tile::<6, NV, RY, POOL>(a, rows, out, arg),
        7 => fwd_tile::<7, NV, RY, POOL>(a, rows, out, arg),
        _ => fwd_tile::<8, NV, RY, POOL>(a, rows, out, arg),
    }
}

/// Loads `L` floats at `p`.
///
/// # Safety
/// `p .. p + L` must be readable `f32`s.
#[inline(always)]
unsafe fn load(p: *const f32) -> V {
    // SAFETY: the caller guarantees `L` readable floats; `V` is `L` f32 lanes, and
    // `read_unaligned` has no alignment requirement.
    unsafe { p.cast::<V>().read_unaligned() }
}

/// Stores the first `dst.len() ≤ L` lanes of `v` into `dst`: one vector store when
/// the row has a whole vector left, a masked store for its tail (a `memcpy` call of a
/// variable length here would cost more than the tile's arithmetic).
#[inline(always)]
fn store_lanes(dst: &mut [f32], v: V) {
    let n = dst.len();
    assert!(n <= L);
    let lanes = v.to_array();
    if n == L {
        dst[..L].copy_from_slice(&lanes);
        return;
    }
    #[cfg(target_feature = "avx512f")]
    {
        use std::arch::x86_64::{_mm512_loadu_ps, _mm512_mask_storeu_ps};
        // SAFETY: `lanes` holds 16 floats; the mask `(1 << n) − 1` (n < 16) writes
        // exactly `dst[..n]`, which is in bounds.
        unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), (1u16 << n) - 1, _mm512_loadu_ps(lanes.as_ptr())) }
    }
    #[cfg(all(not(target_feature = "avx512f"), target_feature = "avx2"))]
    {
        use std::arch::x86_64::{
            _mm256_cmpgt_epi32, _mm256_loadu_ps, _mm256_maskstore_ps, _mm256_set1_epi32, _mm256_setr_epi32,
        };
        // SAFETY: `lanes` holds 8 floats; lane i of the mask is set iff i < n, so the
        // store writes exactly `dst[..n]`, which is in bounds.
        unsafe {
            let mask =
                _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            _mm256_maskstore_ps(dst.as_mut_ptr(), mask, _mm256_loadu_ps(lanes.as_ptr()));
        }
    }
    #[cfg(not(any(target_feature = "avx512f", target_feature = "avx2")))]
    for (d, s) in dst.iter_mut().zip(lanes) {
        *d = s;
    }
}

/// Output channels `o0 .. o0 + OB` of rows `rows` (a multiple of `RY` of them) of one
/// image, tile by tile of `RY` rows × `NV·L` outputs: each broadcast weight feeds
/// `RY·NV` FMAs. Pooled (`RY` even, `rows` starting at an even row), each pair of
/// rows is reduced to its row of 2 × 2 windows before it leaves the tile.
#[inline(always)]
fn fwd_tile<const OB: usize, const NV: usize, const RY: usize, const POOL: bool>(
    a: &FwdArgs<'_>,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
    arg: &mut [u32],
) {
    let p = a.plan;
    let o_total = p.o;
    let (ph, pw) = (p.oh / 2, p.ow / 2);
    assert!(a.o0 + OB <= o_total && a.wt.len() == a.taps.len() * o_total);
    if POOL {
        assert!(
            a.pooled
                && RY.is_multiple_of(2)
                && rows.start.is_multiple_of(2)
                && out.len() == o_total * ph * pw
        );
        assert!(arg.is_empty() || arg.len() == out.len());
    } else {
        assert!(out.len() == o_total * p.oh * p.ow);
    }
    assert!(a.padded.len() >= p.padded_len());
    assert!(rows.end <= p.oh && rows.len().is_multiple_of(RY));
    // Every tap offset plus the largest tile origin plus NV·L lanes stays inside the
    // padded image: the last tap is at `(C−1)·HP·WP + (KH−1)·WP + KW−1`, the last tile
    // origin `(OH−1)·WP + (WP − KW + 1 − NV·L)`, and `HP = OH + KH − 1`.
    assert!(a.taps.iter().all(|&t| t <= p.last_tap()));
    let tiles = (p.wp + 1 - p.kw) / (NV * L);
    let base_ptr = a.padded.as_ptr();
    let w_ptr = a.wt.as_ptr();
    for y0 in rows.step_by(RY) {
        for tx in 0..tiles {
            let origin = y0 * p.wp + tx * NV * L;
            let mut acc = [[[V::ZERO; NV]; RY]; OB];
            for (t, &off) in a.taps.iter().enumerate() {
                let mut x = [[V::ZERO; NV]; RY];
                for (r, xr) in x.iter_mut().enumerate() {
                    for (v, xv) in xr.iter_mut().enumerate() {
                        // SAFETY: row `y0 + r < OH`, so `origin + r·WP + off + v·L + L ≤ C·HP·WP
                        // ≤ padded.len()` by the bounds asserted above (tile origins and tap offsets).
                        *xv = unsafe { load(base_ptr.add(origin + r * p.wp + off + v * L)) };
                    }
                }
                for (o, acc_o) in acc.iter_mut().enumerate() {
                    // SAFETY: `t < taps.len()` and `o0 + o < O`, so the index is below `wt.len()`.
                    let w = V::splat(unsafe { *w_ptr.add(t * o_total + a.o0 + o) });
                    for (acc_or, xr) in acc_o.iter_mut().zip(&x) {
                        for (acc_ov, xv) in acc_or.iter_mut().zip(xr) {
                            *acc_ov = xv.mul_add(w, *acc_ov);
                        }
                    }
                }
            }
            let x0 = tx * NV * L;
            if POOL {
                pool_epilogue::<OB, NV, RY>(a, &acc, (y0, x0), out, arg);
                continue;
            }
            for (o, acc_o) in acc.iter().enumerate() {
                let oc = a.o0 + o;
                let b = V::splat(a.bias.map_or(0.0, |b| b[oc]));
                for (r, acc_or) in acc_o.iter().enumerate() {
                    let row = &mut out[(oc * p.oh + y0 + r) * p.ow..][..p.ow];
                    for (v, acc_ov) in acc_or.iter().enumerate() {
                        let start = x0 + v * L;
                        if start >= p.ow {
                            break;
                        }
                        let mut res = *acc_ov + b;
                        if a.relu {
                            res = res.max(V::ZERO);
                        }
                        store_lanes(&mut row[start..(start + L).min(p.ow)], res);
                    }
                }
            }
        }
    }
}

/// The pooled write-out of one forward tile (rows `y0 .. y0 + RY`, columns
/// `x0 .. x0 + NV·L`, `y0` even): bias and ReLU as in the full write-out, then each pair
/// of rows goes through a spill buffer to [`pool_window_row`], the separate pooling's
/// own row kernel, so the values and argmax positions are the same bits.
#[inline(always)]
fn pool_epilogue<const OB: usize, const NV: usize, const RY: usize>(
    a: &FwdArgs<'_>,
    acc: &[[[V; NV]; RY]; OB],
    (y0, x0): (usize, usize),
    out: &mut [f32],
    arg: &mut [u32],
) {
    let p = a.plan;
    let (ph, pw) = (p.oh / 2, p.ow / 2);
    // Windows whose columns lie in this tile (`NV·L` is even, so none straddles two).
    let windows = pw.saturating_sub(x0 / 2).min(NV * L / 2);
    if windows == 0 {
        return;
    }
    let mut scratch = [0u32; L];
    for (o, acc_o) in acc.iter().enumerate() {
        let oc = a.o0 + o;
        let b = V::splat(a.bias.map_or(0.0, |b| b[oc]));
        for r in (0..RY).step_by(2) {
            let y = y0 + r;
            let mut spill = [[0.0f32; 2 * L]; 2];
            for (rows, acc_or) in spill.iter_mut().zip(&acc_o[r..r + 2]) {
                for (dst, acc_ov) in rows.chunks_exact_mut(L).zip(acc_or) {
                    let mut res = *acc_ov + b;
                    if a.relu {
                        res = res.max(V::ZERO);
                    }
                    dst.copy_from_slice(&res.to_array());
                }
            }
            let at = (oc * ph + y / 2) * pw + x0 / 2;
            let arg_row = if arg.is_empty() { &mut scratch[..windows] } else { &mut arg[at..at + windows] };
            let base = (y * p.ow + x0) as u32;
            let (top, bottom) = (&spill[0][..2 * windows], &spill[1][..2 * windows]);
            pool_window_row(&mut out[at..at + windows], arg_row, top, bottom, base, p.ow as u32);
        }
    }
}

/// Backward over the batch for a geometry accepted by [`supports_backward`]; lengths
/// have been checked by the caller. `grad_input` is overwritten; `grad_weight` and
/// `grad_bias` are accumulated.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
    parallelism: Parallelism,
) {
    let Some(plan) = Plan::from_geometry(g) else { return };
    let in_img = plan.c * plan.h * plan.w;
    let out_img = plan.o * plan.oh * plan.ow;
    if let Some(gi) = grad_input {
        input_gradient(g, &plan, weight, grad_output, gi, parallelism);
    }
    if g.batch == 0 || in_img == 0 || out_img == 0 {
        if let Some(gb) = grad_bias {
            for (b, v) in gb.iter_mut().zip(bias_partial(grad_output, plan.o, plan.oh * plan.ow)) {
                *b += v;
            }
        }
        return;
    }
    let taps = plan.taps();
    let runs = g.batch.div_ceil(DW_RUN_IMAGES);
    let one_run = |scratch: &mut DwScratch, r: usize| {
        let images = DW_RUN_IMAGES.min(g.batch - r * DW_RUN_IMAGES);
        let img = &input[r * DW_RUN_IMAGES * in_img..][..images * in_img];
        let go = &grad_output[r * DW_RUN_IMAGES * out_img..][..images * out_img];
        weight_gradient_run(&plan, &taps, img, go, scratch)
    };
    let new_scratch = || {
        Reused::take(plan, || DwScratch {
            padded: vec![0.0; DW_RUN_IMAGES * plan.padded_len()],
            grad_out: vec![0.0; DW_RUN_IMAGES * plan.o * plan.oh * plan.gw() + L],
            grad_out_cl: Vec::new(),
        })
    };
    let partials: Vec<Partial> = if parallelism == Parallelism::Threads && runs > 1 {
        team::map_init((0..runs).collect(), new_scratch, |scratch, _, r| one_run(scratch, r))
    } else {
        let mut scratch = new_scratch();
        (0..runs).map(|r| one_run(&mut scratch, r)).collect()
    };
    // Fixed order: run 0, run 1, …, whatever thread computed each.
    let mut grad_bias = grad_bias;
    for p in &partials {
        for (d, v) in grad_weight.iter_mut().zip(&p.weight) {
            *d += *v;
        }
        if let Some(gb) = grad_bias.as_deref_mut() {
            for (d, v) in gb.iter_mut().zip(&p.bias) {
                *d += *v;
            }
        }
    }
}

/// dX = the forward kernel on dY (`N × O × OH × OW`, padded by `K − 1 − p`) with the
/// weights `w'[c, o, ky, kx] = w[o, c, KH−1−ky, KW−1−kx]`; overwrites `grad_input`.
fn input_gradient(
    g: &ConvGeometry,
    plan: &Plan,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    parallelism: Parallelism,
) {
    let Some(tplan) = Plan::new(
        plan.o,
        plan.oh,
        plan.ow,
        plan.c,
        plan.kh,
        plan.kw,
        plan.kh - 1 - g.pad,
        plan.kw - 1 - g.pad,
    ) else {
        return;
    };
    // The transposed convolution's weights, already in its `K' × O'` layout:
    // tap (o, ky, kx) of input channel o, output channel c.
    let (kh, kw, c_n) = (plan.kh, plan.kw, plan.c);
    let mut wt = vec![0.0f32; plan.o * kh * kw * c_n];
    for o in 0..plan.o {
        for ky in 0..kh {
            for kx in 0..kw {
                let t = (o * kh + ky) * kw + kx;
                for c in 0..c_n {
                    wt[t * c_n + c] = weight[((o * c_n + c) * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx)];
                }
            }
        }
    }
    // Whole groups of `L` images with the lanes over images (see `grad_input_by_image`),
    // the rest with the lanes over output rows: each output the same bits either way.
    let group = grad_input_by_image::GROUP;
    let groups = if grad_input_by_image::preferred(&tplan) { g.batch / group } else { 0 };
    let (q_in, q_out) = (tplan.c * tplan.h * tplan.w, tplan.o * tplan.oh * tplan.ow);
    let (head_in, tail_in) = grad_output.split_at(groups * group * q_in);
    let (head_out, tail_out) = grad_input.split_at_mut(groups * group * q_out);
    if groups > 0 {
        let items: Vec<_> =
            head_in.chunks_exact(group * q_in).zip(head_out.chunks_exact_mut(group * q_out)).collect();
        let new_scratch = || Reused::take(tplan, || grad_input_by_image::Scratch::new(&tplan));
        let one = |s: &mut grad_input_by_image::Scratch, (dy, dx): (&[f32], &mut [f32])| {
            grad_input_by_image::group(&tplan, &wt, dy, dx, s)
        };
        if parallelism == Parallelism::Threads && groups > 1 {
            team::map_init(items, new_scratch, |s, _, item| one(s, item));
        } else {
            let mut s = new_scratch();
            items.into_iter().for_each(|item| one(&mut s, item));
        }
    }
    if !tail_in.is_empty() {
        run_forward(&tplan, tail_in, &wt, None, false, Output::Full(tail_out), parallelism);
    }
}

/// A zero-bordered padded input image of one plan (see [`Plan::pad_into`]).
struct Padded(Vec<f32>);

/// Padded copies of one run's inputs (`B × C × HP × WP`) and output gradients
/// (`B × O × OH × GW`); borders zeroed once, at allocation, and kept zero by every
/// run of the same plan (so that a thread may keep it for the next call, see
/// [`crate::reuse`]).
struct DwScratch {
    padded: Vec<f32>,
    /// `L` floats longer than needed: the rows start at the first vector-aligned float
    /// ([`DwScratch::grad_out`]), so the tile's dY loads never straddle cache lines.
    grad_out: Vec<f32>,
    /// The run's output gradients channel-last (`B × OH × OW × O`), for
    /// [`weight_gradient_by_channel`].
    grad_out_cl: Vec<f32>,
}

/// Offset of the first float of `buf` aligned to a whole vector (0 if none is within
/// `L` floats): scratch buffers are allocated `L` floats long and used from there, so
/// that no vector load or store straddles two cache lines.
fn vector_aligned_start(buf: &[f32]) -> usize {
    let off = buf.as_ptr().align_offset(align_of::<V>().max(size_of::<V>()));
    if off < L { off } else { 0 }
}

/// `buf` (allocated `L` floats long) from its first vector-aligned float, `L` floats shorter.
fn aligned(buf: &[f32]) -> &[f32] {
    &buf[vector_aligned_start(buf)..][..buf.len() - L]
}

/// [`aligned`], mutably.
fn aligned_mut(buf: &mut [f32]) -> &mut [f32] {
    let (start, len) = (vector_aligned_start(buf), buf.len() - L);
    &mut buf[start..][..len]
}

impl DwScratch {
    /// The padded dY rows, starting vector-aligned.
    fn grad_out(&self) -> &[f32] {
        aligned(&self.grad_out)
    }

    fn grad_out_mut(&mut self) -> &mut [f32] {
        aligned_mut(&mut self.grad_out)
    }
}

/// The weight and bias gradients of one run of images.
fn weight_gradient_run(
    plan: &Plan,
    taps: &[usize],
    input: &[f32],
    grad_output: &[f32],
    s: &mut DwScratch,
) -> Partial {
    let p = plan;
    let in_img = p.c * p.h * p.w;
    let images = input.len() / in_img;
    let gw = p.gw();
    for (img, dst) in input.chunks_exact(in_img).zip(s.padded.chunks_exact_mut(p.padded_len())) {
        p.pad_into(img, dst);
    }
    if p.o.is_multiple_of(L) && p.o / L <= 2 && (p.kw == 3 || p.kw == 5) {
        return weight_gradient_by_channel(p, taps, images, grad_output, s);
    }
    for (src, dst) in grad_output.chunks_exact(p.ow).zip(s.grad_out_mut().chunks_exact_mut(gw)) {
        copy_short(&mut dst[..p.ow], src);
    }
    let k = taps.len();
    let mut weight = vec![0.0f32; p.o * k];
    let mut o0 = 0;
    while o0 < p.o {
        let ob = tile::DW_OB.min(p.o - o0);
        let mut t0 = 0;
        while t0 < k {
            let tb = tile::DW_TB.min(k - t0);
            let args = DwArgs {
                plan: p,
                padded: &s.padded,
                grad_out: s.grad_out(),
                images,
                taps: &taps[t0..t0 + tb],
                o0,
            };
            let sums = dw_dispatch(ob, tb, &args);
            for (o, row) in sums.iter().enumerate().take(ob) {
                weight[(o0 + o) * k + t0..][..tb].copy_from_slice(&row[..tb]);
            }
            t0 += tb;
        }
        o0 += ob;
    }
    // Bias gradient: the padded dY rows summed vector by vector (their tails are zero).
    // Four accumulators, rotated vector by vector, hide the latency of the adds.
    let mut bias = vec![0.0f32; p.o];
    for (o, b) in bias.iter_mut().enumerate() {
        let mut acc = [V::ZERO; 4];
        for n in 0..images {
            for (i, chunk) in
                s.grad_out()[(n * p.o + o) * p.oh * gw..][..p.oh * gw].chunks_exact(L).enumerate()
            {
                acc[i % 4] += V::new(chunk.try_into().expect("chunk of L"));
            }
        }
        *b = sum_in_order(&((acc[0] + acc[1]) + (acc[2] + acc[3])).to_array());
    }
    Partial { weight, bias }
}

/// What the weight-gradient tile kernel reads.
struct DwArgs<'a> {
    plan: &'a Plan,
    padded: &'a [f32],
    grad_out: &'a [f32],
    images: usize,
    taps: &'a [usize],
    o0: usize,
}

type DwSums = [[f32; tile::DW_TB]; tile::DW_OB];

fn dw_dispatch(ob: usize, tb: usize, a: &DwArgs<'_>) -> DwSums {
    fn by_tb<const OB: usize>(tb: usize, a: &DwArgs<'_>) -> DwSums {
        match tb {
            1 => dw_tile::<OB, 1>(a),
            2 => dw_tile::<OB, 2>(a),
            3 => dw_tile::<OB, 3>(a),
            _ => dw_tile::<OB, { tile::DW_TB }>(a),
        }
    }
    match ob {
        1 => by_tb::<1>(tb, a),
        2 => by_tb::<2>(tb, a),
        3 => by_tb::<3>(tb, a),
        4 => by_tb::<4>(tb, a),
        5 => by_tb::<5>(tb, a),
        _ => by_tb::<{ tile::DW_OB }>(tb, a),
    }
}

/// `Σ_{n, y, x} dY[n, o, y, x] · in[n, tap + y·WP + x]` for `OB` channels × `TB` taps.
#[inline(always)]
fn dw_tile<const OB: usize, const TB: usize>(a: &DwArgs<'_>) -> DwSums {
    let p = a.plan;
    let gw = p.gw();
    let vectors = gw / L;
    let plane = p.padded_len();
    assert!(OB <= tile::DW_OB && TB <= tile::DW_TB && a.taps.len() == TB && a.o0 + OB <= p.o);
    assert!(a.padded.len() >= a.images * plane && a.grad_out.len() >= a.images * p.o * p.oh * gw);
    assert!(a.taps.iter().all(|&t| t <= p.last_tap()));
    let (in_ptr, go_ptr) = (a.padded.as_ptr(), a.grad_out.as_ptr());
    let mut acc = [[V::ZERO; TB]; OB];
    for n in 0..a.images {
        for y in 0..p.oh {
            for v in 0..vectors {
                let mut dy = [V::ZERO; OB];
                for (o, d) in dy.iter_mut().enumerate() {
                    // SAFETY: `((n·O + o0 + o)·OH + y)·GW + v·L + L ≤ images·O·OH·GW ≤ grad_out.len()`.
                    *d = unsafe { load(go_ptr.add(((n * p.o + a.o0 + o) * p.oh + y) * gw + v * L)) };
                }
                let origin = n * plane + y * p.wp + v * L;
                for (t, &off) in a.taps.iter().enumerate() {
                    // SAFETY: `y·WP + v·L + L ≤ (OH−1)·WP + GW` and the largest tap is
                    // `(C−1)·HP·WP + (KH−1)·WP + KW−1`, whose sum is below `C·HP·WP`
                    // (`GW + KW − 1 = WP`, `HP = OH + KH − 1`); image `n < images` fits.
                    let x = unsafe { load(in_ptr.add(origin + off)) };
                    for (acc_o, d) in acc.iter_mut().zip(&dy) {
                        acc_o[t] = d.mul_add(x, acc_o[t]);
                    }
                }
            }
        }
    }
    let mut sums = [[0.0f32; tile::DW_TB]; tile::DW_OB];
    for (s_o, acc_o) in sums.iter_mut().zip(&acc) {
        for (s, a) in s_o.iter_mut().zip(acc_o) {
            *s = a.reduce_add();
        }
    }
    sums
}

/// The weight and bias gradients of one run (its inputs already padded into
/// `s.padded`) with the lanes over output channels instead of output columns: for
/// `O = 16` (LeNet's conv2) each position's `dY[·, y, x]` is one vector, and a tap is
/// one broadcast input value and one FMA, where the row-vectorised [`dw_tile`] fills 10
/// of its 16 lanes with a 10-wide output row. Each weight sums over the run's images,
/// rows and columns in that order, whatever the thread count.
fn weight_gradient_by_channel(
    p: &Plan,
    taps: &[usize],
    images: usize,
    grad_output: &[f32],
    s: &mut DwScratch,
) -> Partial {
    let pos = p.oh * p.ow;
    // dY channel-last: element (n, y, x, o) at ((n·OH + y)·OW + x)·O + o.
    // (Element by element, this transposition took ~16% of conv2's weight gradient.)
    // Every element is overwritten: the scratch keeps its length between runs rather
    // than being zeroed for each.
    s.grad_out_cl.resize(images * pos * p.o, 0.0);
    for (src, dst) in grad_output.chunks_exact(p.o * pos).zip(s.grad_out_cl.chunks_exact_mut(p.o * pos)) {
        transpose_into(src, p.o, pos, dst);
    }
    let k = taps.len();
    let mut weight = vec![0.0f32; p.o * k];
    match (p.o / L, p.kw) {
        (1, 5) => dwc_by_rows::<1, 5, { dwc_rows(1, 5) }>(p, taps, images, s, &mut weight),
        (1, _) => dwc_by_rows::<1, 3, { dwc_rows(1, 3) }>(p, taps, images, s, &mut weight),
        (_, 5) => dwc_by_rows::<2, 5, { dwc_rows(2, 5) }>(p, taps, images, s, &mut weight),
        _ => dwc_by_rows::<2, 3, { dwc_rows(2, 3) }>(p, taps, images, s, &mut weight),
    }
    // Bias: every position's dY vector, summed in order.
    let mut bias = vec![0.0f32; p.o];
    for (ov, chunk) in bias.chunks_exact_mut(L).enumerate() {
        let mut acc = V::ZERO;
        for q in 0..images * pos {
            acc += V::new(s.grad_out_cl[q * p.o + ov * L..][..L].try_into().expect("L values"));
        }
        chunk.copy_from_slice(acc.as_array());
    }
    Partial { weight, bias }
}

/// Every tap of [`weight_gradient_by_channel`] for a kernel `KW` wide, written into
/// `weight` (`O × K`), a tile being `RB` whole kernel rows (then single rows): the taps
/// `(c, ky, 0 .. KW)` of a row are consecutive inputs, so a tile needs `RB` input
/// pointers (each tap a constant displacement from its row's), where a tile of
/// arbitrary taps needs one per tap and, past the general registers, reloads them from
/// the stack on every multiply-add (measured: conv2's backward 7–8% slower).
fn dwc_by_rows<const OV: usize, const KW: usize, const RB: usize>(
    p: &Plan,
    taps: &[usize],
    images: usize,
    s: &DwScratch,
    weight: &mut [f32],
) {
    let k = taps.len();
    debug_assert_eq!(k % KW, 0);
    let rows = k / KW;
    let mut write = |r0: usize, acc: &[[[V; OV]; KW]]| {
        for (r, row) in acc.iter().enumerate() {
            for (kx, vs) in row.iter().enumerate() {
                let t = (r0 + r) * KW + kx;
                for (ov, v) in vs.iter().enumerate() {
                    for (l, &x) in v.as_array().iter().enumerate() {
                        weight[(ov * L + l) * k + t] = x;
                    }
                }
            }
        }
    };
    let mut r0 = 0;
    while r0 + RB <= rows {
        let offsets: [usize; RB] = core::array::from_fn(|r| taps[(r0 + r) * KW]);
        write(r0, &dwc_rows_tile::<OV, KW, RB>(p, offsets, images, s));
        r0 += RB;
    }
    for r in r0..rows {
        write(r, &dwc_rows_tile::<OV, KW, 1>(p, [taps[r * KW]], images, s));
    }
}

/// Kernel rows per tile of [`dwc_by_rows`]: as many as `DWC_ACC` accumulators hold.
const fn dwc_rows(ov: usize, kw: usize) -> usize {
    let rows = tile::DWC_ACC / (ov * kw);
    if rows == 0 { 1 } else { rows }
}

/// `Σ_{n, y, x} dY[n, ·, y, x] · in[n, row + kx + y·WP + x]` for the `RB` kernel rows at
/// `row_offsets` and every `kx < KW`, `OV` vectors of output channels each.
#[inline(always)]
fn dwc_rows_tile<const OV: usize, const KW: usize, const RB: usize>(
    p: &Plan,
    row_offsets: [usize; RB],
    images: usize,
    s: &DwScratch,
) -> [[[V; OV]; KW]; RB] {
    let plane = p.padded_len();
    let pos = p.oh * p.ow;
    assert!(OV * L == p.o && KW == p.kw);
    assert!(s.padded.len() >= images * plane && s.grad_out_cl.len() >= images * pos * p.o);
    assert!(row_offsets.iter().all(|&t| t + KW - 1 <= p.last_tap()));
    let (in_ptr, dy_ptr) = (s.padded.as_ptr(), s.grad_out_cl.as_ptr());
    let mut acc = [[[V::ZERO; OV]; KW]; RB];
    for n in 0..images {
        for y in 0..p.oh {
            for x in 0..p.ow {
                let q = (n * pos + y * p.ow + x) * p.o;
                // SAFETY: q + O ≤ images·OH·OW·O ≤ grad_out_cl.len(), and OV·L = O.
                let dy: [V; OV] = core::array::from_fn(|ov| unsafe { load(dy_ptr.add(q + ov * L)) });
                let origin = n * plane + y * p.wp + x;
                for (acc_r, &row) in acc.iter_mut().zip(&row_offsets) {
                    for (kx, acc_t) in acc_r.iter_mut().enumerate() {
                        // SAFETY: `y·WP + x ≤ (OH−1)·WP + OW − 1` and the tap `row + kx`
                        // is at most `(C−1)·HP·WP + (KH−1)·WP + KW−1` (asserted), whose sum
                        // is below `C·HP·WP` (`OW + KW − 1 ≤ WP`, `HP = OH + KH − 1`);
                        // image `n < images` fits.
                        let x = V::splat(unsafe { *in_ptr.add(origin + row + kx) });
                        for (a, d) in acc_t.iter_mut().zip(&dy) {
                            *a = d.mul_add(x, *a);
                        }
                    }
                }
            }
        }
    }
    acc
}
