//! Max pooling, PyTorch's `nn.MaxPool2d(k)`: windows of `K × K`, stride `K`, no padding,
//! the output size rounded down (trailing rows/columns that do not fill a window are
//! dropped).
//!
//! Dimension legend: `B` batch, `C` channels, `H × W` input, `OH = H / K`, `OW = W / K`.
//! Layouts: `inp` `B × C × H × W`, `out` and `argmax` `B × C × OH × OW`.

/// Max pooling with stride equal to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window height and width `K`, in pixels; also the stride.
    pub kernel: usize,
}

/// Input planes per parallel task: enough work per task (a few thousand pixels) that
/// rayon's overhead vanishes, and many tasks for a batch of 64 images.
fn planes_per_task(hw: usize) -> usize {
    (4096 / hw.max(1)).max(1)
}

/// out[b, c, y, x] = max over the window at (y·K, x·K) of inp[b, c, ·, ·];
/// argmax holds the flat index within the input plane (`iy·W + ix`) of the first
/// maximum in row-major window order (PyTorch's tie rule; NaN propagates), for the
/// backward pass. Planes run in parallel; each output is computed by one thread, so
/// the result does not depend on the thread count.
pub(crate) fn forward(out: &mut [f32], argmax: &mut [u32], inp: &[f32], k: usize, h: usize, w: usize) {
    use rayon::prelude::*;
    let (oh, ow) = (h / k, w / k);
    let (hw, ohw) = (h * w, oh * ow);
    let p = planes_per_task(hw);
    out.par_chunks_mut(p * ohw).zip(argmax.par_chunks_mut(p * ohw)).zip(inp.par_chunks(p * hw)).for_each(
        |((out, arg), inp)| {
            for ((out_p, arg_p), plane) in
                out.chunks_exact_mut(ohw).zip(arg.chunks_exact_mut(ohw)).zip(inp.chunks_exact(hw))
            {
                match k {
                    2 => pool_plane::<2>(out_p, arg_p, plane, oh, ow, w),
                    3 => pool_plane::<3>(out_p, arg_p, plane, oh, ow, w),
                    _ => pool_plane_dyn(out_p, arg_p, plane, k, oh, ow, w),
                }
            }
        },
    );
}

/// One plane with the window size known at compile time (the loops unroll).
#[inline(always)]
fn pool_plane<const K: usize>(
    out: &mut [f32],
    arg: &mut [u32],
    plane: &[f32],
    oh: usize,
    ow: usize,
    w: usize,
) {
    for y in 0..oh {
        let rows: [&[f32]; K] = std::array::from_fn(|ky| &plane[(y * K + ky) * w..][..ow * K]);
        for x in 0..ow {
            let mut best = rows[0][x * K];
            let mut best_i = (y * K) * w + x * K;
            for (ky, row) in rows.iter().enumerate() {
                for kx in 0..K {
                    let v = row[x * K + kx];
                    if v > best || (v.is_nan() && !best.is_nan()) {
                        best = v;
                        best_i = (y * K + ky) * w + x * K + kx;
                    }
                }
            }
            out[y * ow + x] = best;
            arg[y * ow + x] = best_i as u32;
        }
    }
}

fn pool_plane_dyn(out: &mut [f32], arg: &mut [u32], plane: &[f32], k: usize, oh: usize, ow: usize, w: usize) {
    for y in 0..oh {
        for x in 0..ow {
            let mut best = plane[(y * k) * w + x * k];
            let mut best_i = (y * k) * w + x * k;
            for ky in 0..k {
                let row = (y * k + ky) * w + x * k;
                for (kx, &v) in plane[row..row + k].iter().enumerate() {
                    if v > best || (v.is_nan() && !best.is_nan()) {
                        best = v;
                        best_i = row + kx;
                    }
                }
            }
            out[y * ow + x] = best;
            arg[y * ow + x] = best_i as u32;
        }
    }
}

/// Backward of out = max over windows: dinp (B × C × H × W) is overwritten:
/// dinp[b, c, argmax] = dout[b, c, y, x] and 0 elsewhere (windows do not overlap, so
/// no sums). When `mask` (the input of the pooling, the output of a ReLU) is given, the
/// ReLU's backward is fused in: gradients go only to positions where mask > 0.
/// Every input element is written once (window by window, then the rows and columns
/// that no window covers), so no separate zeroing pass is needed.
pub(crate) fn backward(
    dinp: &mut [f32],
    dout: &[f32],
    argmax: &[u32],
    mask: Option<&[f32]>,
    k: usize,
    (h, w): (usize, usize),
) {
    use rayon::prelude::*;
    let (oh, ow) = (h / k, w / k);
    let (hw, ohw) = (h * w, oh * ow);
    let p = planes_per_task(hw);
    dinp.par_chunks_mut(p * hw)
        .zip(dout.par_chunks(p * ohw))
        .zip(argmax.par_chunks(p * ohw))
        .enumerate()
        .for_each(|(task, ((dinp, dout), argmax))| {
            for (j, ((di, d), a)) in dinp
                .chunks_exact_mut(hw)
                .zip(dout.chunks_exact(ohw))
                .zip(argmax.chunks_exact(ohw))
                .enumerate()
            {
                let m = mask.map(|m| &m[(task * p + j) * hw..][..hw]);
                for y in 0..oh {
                    for x in 0..ow {
                        let (g, a) = (d[y * ow + x], a[y * ow + x] as usize);
                        for ky in 0..k {
                            let row = (y * k + ky) * w + x * k;
                            for (kx, v) in di[row..row + k].iter_mut().enumerate() {
                                *v = if row + kx == a && m.is_none_or(|m| m[a] > 0.0) { g } else { 0.0 };
                            }
                        }
                    }
                    for ky in 0..k {
                        di[(y * k + ky) * w + ow * k..(y * k + ky + 1) * w].fill(0.0);
                    }
                }
                di[oh * k * w..].fill(0.0);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Odd sizes (the last row and column are dropped), k = 2, 3 and 4, against the definition.
    #[test]
    fn matches_the_definition_with_dropped_edges() {
        for (k, h, w) in [(2, 5, 7), (3, 7, 8), (4, 9, 9)] {
            let planes = 3;
            let inp: Vec<f32> = (0..planes * h * w).map(|i| ((i * 37) % 23) as f32 - 11.0).collect();
            let (oh, ow) = (h / k, w / k);
            let mut out = vec![0.0; planes * oh * ow];
            let mut arg = vec![0; planes * oh * ow];
            forward(&mut out, &mut arg, &inp, k, h, w);
            let dout: Vec<f32> = (0..out.len()).map(|i| i as f32 + 1.0).collect();
            let mut dinp = vec![f32::NAN; inp.len()];
            backward(&mut dinp, &dout, &arg, None, k, (h, w));
            let mut expect = vec![0.0f32; inp.len()];
            for p in 0..planes {
                for y in 0..oh {
                    for x in 0..ow {
                        let mut best = (f32::NEG_INFINITY, 0);
                        for ky in 0..k {
                            for kx in 0..k {
                                let i = (y * k + ky) * w + x * k + kx;
                                if inp[p * h * w + i] > best.0 {
                                    best = (inp[p * h * w + i], i);
                                }
                            }
                        }
                        let o = p * oh * ow + y * ow + x;
                        assert_eq!(out[o], best.0);
                        assert_eq!(arg[o] as usize, best.1);
                        expect[p * h * w + best.1] = dout[o];
                    }
                }
            }
            assert_eq!(dinp, expect, "k {k}, {h}×{w}");
            // With a mask that is negative everywhere, no gradient passes.
            let mask = vec![-1.0f32; inp.len()];
            backward(&mut dinp, &dout, &arg, Some(&mask), k, (h, w));
            assert!(dinp.iter().all(|&v| v == 0.0));
        }
    }
}
