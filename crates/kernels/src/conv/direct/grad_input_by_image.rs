//! The input gradient with the vector lanes over images: `L` images at a time, each
//! lane one image, every lane computing the same output position.
//!
//! The input gradient is the forward kernel on `dY` padded by `K − 1 − p` (a "full"
//! convolution). With the lanes over an output row, as the forward tile runs it, every
//! tap multiplies a whole vector, also where it meets the padding: for LeNet-5's conv2
//! (10 × 10 `dY`, padding 4, 14 × 14 output) only 51% of those products are not
//! products with zero, and the 14-pixel rows fill 14 of 16 lanes. With the lanes over
//! images instead, the lanes of a vector always agree on which taps meet the padding:
//! the kernel rows that do are skipped outright and the columns nearly so (a tile of
//! `RX` columns runs the union of its columns' valid taps), and all lanes are used.
//!
//! Same bits as the row-lane tile: each output sums `dY·w` over the taps in the same
//! order (`c', ky, kx`), by FMA, into an accumulator that starts at +0; the taps left
//! out are exactly those whose `dY` is the zero padding, whose products (±0) leave such
//! an accumulator unchanged (for finite weights).
//!
//! `dY` of the group is transposed image-last (`C' × H' × (W' + 2·pad) × L`, the
//! columns padded with zeros), the outputs are computed into an image-last buffer
//! (`O' × OH × OW × L`), and that is transposed back into the `L` images' planes.

use super::{L, Plan, V, aligned_mut, load};
use crate::transpose::{transpose_into, transpose_strided};

/// Register tile: `OB` output channels × `RX` output columns of one row.
#[cfg(target_feature = "avx512f")]
mod tile {
    pub(super) const OB: usize = 6;
    pub(super) const RX: usize = 4;
}
#[cfg(not(target_feature = "avx512f"))]
mod tile {
    pub(super) const OB: usize = 3;
    pub(super) const RX: usize = 3;
}

/// Images per group: one per lane.
pub(super) const GROUP: usize = L;

/// Whether image lanes beat row lanes for the transposed convolution `tp` by a clear
/// margin (their vector FMAs per image, fewer than 4/5 of the row tile's; the two
/// transposes are the rest of the cost). Row lanes compute every tap for `⌈OW / L⌉`
/// vectors a row; image lanes the kernel rows that meet `dY` and, per tile of `RX`
/// columns, the kernel columns that meet it for some column, for `1/L` of an image
/// each. LeNet-5's conv2 (14-wide rows, 10 × 10 `dY` padded by 4): 187.5 against 350
/// (per input and output channel) with AVX-512; its conv1 (28-wide, padding 2, never
/// needed in training): 1172 against 1400, measured the same, so rows stay.
pub(super) fn preferred(tp: &Plan) -> bool {
    let rows = tp.oh * tp.ow.div_ceil(tp.nv * L) * tp.nv * tp.kh * tp.kw;
    let valid_ky: usize = (0..tp.oh).map(|y| ky_range(tp, y).len()).sum();
    let mut valid_kx = 0;
    let mut x0 = 0;
    while x0 < tp.ow {
        let rx = tile::RX.min(tp.ow - x0);
        valid_kx += rx * kx_range(tp, x0, rx).len();
        x0 += rx;
    }
    5 * valid_ky * valid_kx < 4 * rows * L
}

/// The kernel rows `ky` for output row `y` whose `dY` row `y + ky − pad_h` exists
/// (in `0 .. H'`); possibly empty.
fn ky_range(tp: &Plan, y: usize) -> std::ops::Range<usize> {
    let (lo, end) = (tp.pad_h.saturating_sub(y), (tp.h + tp.pad_h).saturating_sub(y).min(tp.kh));
    lo..end.max(lo)
}

/// The kernel columns `kx` whose `dY` column `x + kx − pad_w` exists (in `0 .. W'`) for
/// at least one of the output columns `x0 .. x0 + rx` (`rx ≥ 1`); possibly empty.
fn kx_range(tp: &Plan, x0: usize, rx: usize) -> std::ops::Range<usize> {
    let (lo, end) = (tp.pad_w.saturating_sub(x0 + rx - 1), (tp.w + tp.pad_w).saturating_sub(x0).min(tp.kw));
    lo..end.max(lo)
}

/// One thread's buffers for [`group`], sized for one plan. Each is `L` floats longer
/// than it needs and used from its first vector-aligned float, so that no vector load
/// or store straddles two cache lines. Its padding columns depend on the plan: a thread
/// keeps it for calls of the same plan only (see `crate::reuse`).
pub(super) struct Scratch {
    /// `dY` image-last, columns zero-padded: `C' × H' × WPAD × L` (`WPAD = W' + 2·pad_w`);
    /// the padding columns are zeroed here and never written.
    dy: Vec<f32>,
    /// The outputs image-last: `O' × OH × OW × L`.
    dx: Vec<f32>,
}

impl Scratch {
    /// Buffers for the transposed convolution `tp` (its input is `dY`).
    pub(super) fn new(tp: &Plan) -> Self {
        Self { dy: vec![0.0; tp.c * tp.h * wpad(tp) * L + L], dx: vec![0.0; tp.o * tp.oh * tp.ow * L + L] }
    }
}

/// Width of a padded `dY` row in positions.
fn wpad(tp: &Plan) -> usize {
    tp.w + 2 * tp.pad_w
}

/// The input gradient of one group of `L` images: `grad_output` is their `dY`
/// (`L × C' × H' × W'`), `grad_input` their `dX` (`L × O' × OH × OW`, overwritten);
/// `wt` is the transposed convolution's `K' × O'` weights.
pub(super) fn group(tp: &Plan, wt: &[f32], grad_output: &[f32], grad_input: &mut [f32], s: &mut Scratch) {
    let (q_in, q_out) = (tp.c * tp.h * tp.w, tp.o * tp.oh * tp.ow);
    assert!(grad_output.len() == L * q_in && grad_input.len() == L * q_out);
    assert!(wt.len() == tp.c * tp.kh * tp.kw * tp.o);
    assert!(tp.oh + tp.kh == tp.h + 2 * tp.pad_h + 1 && tp.ow + tp.kw == tp.w + 2 * tp.pad_w + 1);
    let wp = wpad(tp);
    let (dy, dx) = (aligned_mut(&mut s.dy), aligned_mut(&mut s.dx));
    // dY image-last, row by row into the padded rows (their borders stay zero).
    for row in 0..tp.c * tp.h {
        transpose_strided(&grad_output[row * tp.w..], q_in, L, tp.w, &mut dy[(row * wp + tp.pad_w) * L..], L);
    }
    let mut o0 = 0;
    while o0 < tp.o {
        let ob = tile::OB.min(tp.o - o0);
        for y in 0..tp.oh {
            let mut x0 = 0;
            while x0 < tp.ow {
                let rx = tile::RX.min(tp.ow - x0);
                dispatch(ob, rx, &Tile { tp, wt, dy, o0, y, x0 }, dx);
                x0 += rx;
            }
        }
        o0 += ob;
    }
    transpose_into(dx, q_out, L, grad_input);
}

/// Where one register tile sits: output channels `o0 ..`, row `y`, columns `x0 ..`.
struct Tile<'a> {
    tp: &'a Plan,
    wt: &'a [f32],
    dy: &'a [f32],
    o0: usize,
    y: usize,
    x0: usize,
}

fn dispatch(ob: usize, rx: usize, t: &Tile<'_>, dx: &mut [f32]) {
    // Each narrower kernel exists only below the full tile (AVX2's is 3 × 3): the
    // guards leave the full size to the last arm and no kernel is instantiated twice.
    fn by_rx<const OB: usize>(rx: usize, t: &Tile<'_>, dx: &mut [f32]) {
        match rx {
            1 => tile_kernel::<OB, 1>(t, dx),
            2 => tile_kernel::<OB, 2>(t, dx),
            3 if tile::RX > 3 => tile_kernel::<OB, 3>(t, dx),
            _ => tile_kernel::<OB, { tile::RX }>(t, dx),
        }
    }
    match ob {
        1 => by_rx::<1>(rx, t, dx),
        2 => by_rx::<2>(rx, t, dx),
        3 if tile::OB > 3 => by_rx::<3>(rx, t, dx),
        4 if tile::OB > 4 => by_rx::<4>(rx, t, dx),
        5 if tile::OB > 5 => by_rx::<5>(rx, t, dx),
        _ => by_rx::<{ tile::OB }>(rx, t, dx),
    }
}

/// Output channels `o0 .. o0 + OB`, columns `x0 .. x0 + RX` of row `y`, for all `L`
/// images: the taps over the kernel rows whose `dY` row exists, and the kernel columns
/// that meet `dY` for at least one of the tile's columns (the others read the zero
/// padding of the row, as the row-lane tile does).
#[inline(always)]
fn tile_kernel<const OB: usize, const RX: usize>(t: &Tile<'_>, dx: &mut [f32]) {
    let tp = t.tp;
    let (o_total, wp) = (tp.o, wpad(tp));
    assert!(t.o0 + OB <= o_total && t.x0 + RX <= tp.ow && t.y < tp.oh);
    let (kys, kxs) = (ky_range(tp, t.y), kx_range(tp, t.x0, RX));
    let mut acc = [[V::ZERO; RX]; OB];
    if !kys.is_empty() && !kxs.is_empty() {
        // The last position read, `((C'−1)·H' + y + kys.end − 1 − pad_h)·WPAD + x0 + RX − 1 +
        // kxs.end − 1`, is inside dY: `y + kys.end − 1 − pad_h < H'` and `x0 + RX − 1 +
        // kxs.end − 1 ≤ OW + KW − 2 < WPAD`; the last weight read is inside `wt`.
        assert!(
            (((tp.c - 1) * tp.h + t.y + kys.end - 1 - tp.pad_h) * wp + t.x0 + RX + kxs.end - 2) * L + L
                <= t.dy.len()
        );
        assert!(t.wt.len() == tp.c * tp.kh * tp.kw * o_total);
        let (dy_ptr, w_ptr) = (t.dy.as_ptr(), t.wt.as_ptr());
        for c in 0..tp.c {
            for ky in kys.clone() {
                // dY row `y + ky − pad_h` of channel c from the tile's first column, and the
                // weights of its taps `(c, ky, ·)` from channel o0.
                let row = ((c * tp.h + t.y + ky - tp.pad_h) * wp + t.x0) * L;
                let taps = ((c * tp.kh + ky) * tp.kw) * o_total + t.o0;
                for kx in kxs.clone() {
                    // SAFETY: positions `x0 + x + kx ≤ x0 + RX − 1 + kxs.end − 1` of this row and
                    // weights `(c, ky, kx)` of channels `o0 .. o0 + OB`, inside by the asserts.
                    let d: [V; RX] =
                        core::array::from_fn(|x| unsafe { load(dy_ptr.add(row + (x + kx) * L)) });
                    for (o, acc_o) in acc.iter_mut().enumerate() {
                        // SAFETY: as above.
                        let w_o = V::splat(unsafe { *w_ptr.add(taps + kx * o_total + o) });
                        for (a, dv) in acc_o.iter_mut().zip(&d) {
                            *a = dv.mul_add(w_o, *a);
                        }
                    }
                }
            }
        }
    }
    for (o, acc_o) in acc.iter().enumerate() {
        for (x, a) in acc_o.iter().enumerate() {
            let at = (((t.o0 + o) * tp.oh + t.y) * tp.ow + t.x0 + x) * L;
            dx[at..at + L].copy_from_slice(&a.to_array());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Output, run_forward};
    use super::*;
    use crate::gemm::Parallelism;

    /// Image lanes against the row-lane forward kernel, bit for bit, on the transposed
    /// convolutions of LeNet-5's conv2 and of shapes that leave every tile remainder,
    /// clip kernel rows and columns on both sides, or meet no `dY` at all in some rows.
    #[test]
    fn image_lanes_equal_row_lanes_bit_for_bit() {
        // (C', H', W', O', KH, KW, pad_h, pad_w) of the transposed convolution.
        let plans = [
            (16, 10, 10, 6, 5, 5, 4, 4),
            (1, 3, 5, 7, 3, 3, 2, 2),
            (3, 6, 2, 5, 3, 5, 1, 4),
            (2, 1, 1, 9, 5, 5, 4, 4),
            (5, 7, 9, 1, 2, 3, 1, 0),
            (4, 5, 4, 13, 4, 4, 3, 3),
        ];
        for (c, h, w, o, kh, kw, ph, pw) in plans {
            let tp = Plan::new(c, h, w, o, kh, kw, ph, pw).expect("a valid plan");
            let q_in = c * h * w;
            let dy: Vec<f32> = (0..GROUP * q_in)
                .map(|i| if i % 5 == 0 { 0.0 } else { ((i * 37) % 101) as f32 / 50.0 - 1.0 })
                .collect();
            let wt: Vec<f32> = (0..c * kh * kw * o).map(|i| ((i * 13) % 29) as f32 / 14.0 - 1.0).collect();
            let q_out = o * tp.oh * tp.ow;
            let mut rows = vec![f32::NAN; GROUP * q_out];
            run_forward(&tp, &dy, &wt, None, false, Output::Full(&mut rows), Parallelism::None);
            let mut images = vec![f32::NAN; GROUP * q_out];
            let mut scratch = Scratch::new(&tp);
            // Twice through the same scratch: its padding must stay zero.
            for _ in 0..2 {
                group(&tp, &wt, &dy, &mut images, &mut scratch);
                for (i, (a, b)) in images.iter().zip(&rows).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "plan {:?}, element {i}: {a} vs {b}",
                        (c, h, w, o, kh, kw, ph, pw)
                    );
                }
            }
        }
    }

    /// The choice: LeNet-5's conv2 input gradient (14-wide rows, 51% of the row tile's
    /// products with padding) takes image lanes; conv1's (28-wide, padding 2) does not.
    #[test]
    fn lenet_conv2_prefers_image_lanes_and_conv1_rows() {
        let conv2 = Plan::new(16, 10, 10, 6, 5, 5, 4, 4).expect("conv2's transposed plan");
        let conv1 = Plan::new(6, 28, 28, 1, 5, 5, 2, 2).expect("conv1's transposed plan");
        assert!(preferred(&conv2));
        assert!(!preferred(&conv1));
    }
}
