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

/// out[b, c, y, x] = max over the window at (y·K, x·K) of inp[b, c, ·, ·];
/// argmax holds the flat index within the input plane (`iy·W + ix`) of the first
/// maximum in row-major window order (PyTorch's tie rule), for the backward pass.
pub(crate) fn forward(
    out: &mut [f32],
    argmax: &mut [u32],
    inp: &[f32],
    k: usize,
    planes: usize,
    h: usize,
    w: usize,
) {
    let (oh, ow) = (h / k, w / k);
    for p in 0..planes {
        let plane = &inp[p * h * w..(p + 1) * h * w];
        let out_p = &mut out[p * oh * ow..(p + 1) * oh * ow];
        let arg_p = &mut argmax[p * oh * ow..(p + 1) * oh * ow];
        for y in 0..oh {
            for x in 0..ow {
                let mut best = f32::NEG_INFINITY;
                let mut best_i = (y * k) * w + x * k;
                for ky in 0..k {
                    let row = (y * k + ky) * w + x * k;
                    for (kx, &v) in plane[row..row + k].iter().enumerate() {
                        // NaN propagates, as in PyTorch.
                        if v > best || v.is_nan() {
                            best = v;
                            best_i = row + kx;
                        }
                    }
                }
                out_p[y * ow + x] = best;
                arg_p[y * ow + x] = best_i as u32;
            }
        }
    }
}

/// Backward of out = max over windows: dinp (B × C × H × W) is overwritten with zeros,
/// then dinp[b, c, argmax] = dout[b, c, y, x] (windows do not overlap, so no sums).
/// When `mask` (the input of the pooling, the output of a ReLU) is given, the ReLU's
/// backward is fused in: gradients go only to positions where mask > 0.
pub(crate) fn backward(
    dinp: &mut [f32],
    dout: &[f32],
    argmax: &[u32],
    mask: Option<&[f32]>,
    planes: usize,
    hw: usize,
    ohw: usize,
) {
    dinp.fill(0.0);
    for p in 0..planes {
        let di = &mut dinp[p * hw..(p + 1) * hw];
        let m = mask.map(|m| &m[p * hw..(p + 1) * hw]);
        for (&d, &a) in dout[p * ohw..(p + 1) * ohw].iter().zip(&argmax[p * ohw..(p + 1) * ohw]) {
            let a = a as usize;
            if m.is_none_or(|m| m[a] > 0.0) {
                di[a] = d;
            }
        }
    }
}
