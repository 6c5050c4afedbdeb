//! Flatten, PyTorch's `nn.Flatten`: `B × C × H × W` → `B × (C·H·W)` in C, H, W order.
//!
//! NCHW storage is already that order, so forward and backward are copies.

/// out (B × C·H·W) = inp (B × C × H × W).
pub(crate) fn forward(out: &mut [f32], inp: &[f32]) {
    out.copy_from_slice(inp);
}

/// Backward of the copy: dinp = dout (overwritten).
pub(crate) fn backward(dinp: &mut [f32], dout: &[f32]) {
    dinp.copy_from_slice(dout);
}
