//! ReLU, PyTorch's `nn.ReLU`: `out = max(inp, 0)` elementwise.
//!
//! Dimension legend: `N` elements (batch × C × H × W); all buffers have length `N`.

/// out (N) = max(inp (N), 0).
pub(crate) fn forward(out: &mut [f32], inp: &[f32]) {
    for (o, &x) in out.iter_mut().zip(inp) {
        *o = x.max(0.0);
    }
}

/// Backward of out = max(inp, 0): dinp (N) = dout (N) where out > 0, else 0 (overwritten).
/// Uses the forward *output* as the mask, which equals `inp > 0`.
pub(crate) fn backward(dinp: &mut [f32], dout: &[f32], out: &[f32]) {
    for ((di, &d), &y) in dinp.iter_mut().zip(dout).zip(out) {
        *di = if y > 0.0 { d } else { 0.0 };
    }
}
