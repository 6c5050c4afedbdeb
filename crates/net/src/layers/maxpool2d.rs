//! Max pooling, PyTorch's `nn.MaxPool2d(k)`: windows of `K × K`, stride `K`, no padding,
//! the output size rounded down (trailing rows/columns that do not fill a window are
//! dropped).
//!
//! Dimension legend: `B` batch, `C` channels, `H × W` input, `OH = H / K`, `OW = W / K`.
//! Layouts: `inp` `B × C × H × W`, `out` and `argmax` `B × C × OH × OW`.

use kernels::KernelError;

/// Max pooling with stride equal to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window height and width `K`, in pixels; also the stride.
    pub kernel: usize,
}

/// Input planes per parallel task: enough work per task (about 16 K pixels, a few
/// thousand instructions with the vector kernel) that a task's overhead stays small,
/// and still several tasks for a batch of 64 images.
fn planes_per_task(hw: usize) -> usize {
    (16384 / hw.max(1)).max(1)
}

/// out[b, c, y, x] = max over the window at (y·K, x·K) of inp[b, c, ·, ·];
/// argmax holds the flat index within the input plane (`iy·W + ix`) of the first
/// maximum in row-major window order (PyTorch's tie rule), for the backward pass.
/// Unlike PyTorch, a NaN does not win a window unless it comes first (a diverging
/// model is caught by its loss). `K = 2` runs on the vector kernel
/// `kernels::pool::max_pool_2x2`, other windows on a scalar loop with the same rule.
/// Planes run in parallel; each output is computed by one thread, so the result does
/// not depend on the thread count.
///
/// # Errors
/// Only a shape the model did not validate (from `kernels`).
pub(crate) fn forward(
    out: &mut [f32],
    argmax: &mut [u32],
    inp: &[f32],
    k: usize,
    h: usize,
    w: usize,
) -> Result<(), KernelError> {
    let (oh, ow) = (h / k, w / k);
    let (hw, ohw) = (h * w, oh * ow);
    let p = planes_per_task(hw);
    let task = |((out, arg), inp): ((&mut [f32], &mut [u32]), &[f32])| {
        if k == 2 {
            return kernels::pool::max_pool_2x2(inp, (h, w), out, arg);
        }
        let planes = out.chunks_exact_mut(ohw).zip(arg.chunks_exact_mut(ohw)).zip(inp.chunks_exact(hw));
        for ((out_p, arg_p), plane) in planes {
            pool_plane(out_p, arg_p, plane, k, oh, ow, w);
        }
        Ok(())
    };
    if inp.len() <= p * hw {
        // One task: no parallel region (a pruned model's whole batch can be this small).
        return task(((out, argmax), inp));
    }
    let tasks = out.chunks_mut(p * ohw).zip(argmax.chunks_mut(p * ohw)).zip(inp.chunks(p * hw)).collect();
    kernels::team::map(tasks, |_, t| task(t)).into_iter().collect()
}

fn pool_plane(out: &mut [f32], arg: &mut [u32], plane: &[f32], k: usize, oh: usize, ow: usize, w: usize) {
    for y in 0..oh {
        for x in 0..ow {
            let mut best = plane[(y * k) * w + x * k];
            let mut best_i = (y * k) * w + x * k;
            for ky in 0..k {
                let row = (y * k + ky) * w + x * k;
                for (kx, &v) in plane[row..row + k].iter().enumerate() {
                    if v > best {
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
/// no sums).
///
/// When `relu_out` is given — the pooling's own output, when its input is a ReLU's
/// output — the ReLU's backward is fused in: a window passes its gradient only when its
/// maximum is > 0 (the ReLU output at the argmax is exactly the pooled value).
///
/// # Errors
/// Only a shape the model did not validate (from `kernels`).
pub(crate) fn backward(
    dinp: &mut [f32],
    dout: &[f32],
    argmax: &[u32],
    relu_out: Option<&[f32]>,
    k: usize,
    (h, w): (usize, usize),
) -> Result<(), KernelError> {
    let (oh, ow) = (h / k, w / k);
    let (hw, ohw) = (h * w, oh * ow);
    let p = planes_per_task(hw);
    let task = |task: usize, dinp: &mut [f32], dout: &[f32], argmax: &[u32]| {
        let gate = relu_out.map(|o| &o[task * p * ohw..][..dout.len()]);
        if k == 2 {
            return kernels::pool::max_unpool_2x2(dout, argmax, gate, (h, w), dinp);
        }
        let planes = dinp.chunks_exact_mut(hw).zip(dout.chunks_exact(ohw)).zip(argmax.chunks_exact(ohw));
        for (j, ((di, d), a)) in planes.enumerate() {
            let gate = gate.map(|g| &g[j * ohw..][..ohw]);
            di.fill(0.0);
            for (o, (&g, &a)) in d.iter().zip(a).enumerate() {
                if gate.is_none_or(|v| v[o] > 0.0) {
                    di[a as usize] = g;
                }
            }
        }
        Ok(())
    };
    if dinp.len() <= p * hw {
        return task(0, dinp, dout, argmax);
    }
    let tasks = dinp.chunks_mut(p * hw).zip(dout.chunks(p * ohw)).zip(argmax.chunks(p * ohw)).collect();
    kernels::team::map(tasks, |t, ((dinp, dout), argmax)| task(t, dinp, dout, argmax)).into_iter().collect()
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
            forward(&mut out, &mut arg, &inp, k, h, w).unwrap();
            let dout: Vec<f32> = (0..out.len()).map(|i| i as f32 + 1.0).collect();
            let mut dinp = vec![f32::NAN; inp.len()];
            backward(&mut dinp, &dout, &arg, None, k, (h, w)).unwrap();
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
            // Gated by the pooled values (a ReLU below): windows whose maximum is ≤ 0 pass nothing.
            backward(&mut dinp, &dout, &arg, Some(&out), k, (h, w)).unwrap();
            for (i, v) in dinp.iter().enumerate() {
                let e = if inp[i] > 0.0 { expect[i] } else { 0.0 };
                assert_eq!(*v, e, "gated, k {k}, element {i}");
            }
        }
    }
}
