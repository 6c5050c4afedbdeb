//! 2-D convolution, PyTorch's `nn.Conv2d` with a square kernel, stride and zero padding.
//!
//! Dimension legend: `B` batch, `C` input channels, `O` output channels, `H × W`
//! input, `OH × OW` output, `K × K` kernel, `s` stride, `p` padding,
//! `OH = (H + 2p − K) / s + 1`.
//! Layouts: `inp` `B × C × H × W`, `out` `B × O × OH × OW`, `weight` `O × C × K × K`,
//! `bias` `O`. The heavy work (im2col + GEMM) is `kernels::conv`.

use kernels::{ConvGeometry, KernelError, Parallelism};

/// A convolution layer with owned parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    /// Input channels `C`.
    pub in_channels: usize,
    /// Output channels `O`.
    pub out_channels: usize,
    /// Kernel height and width `K`, in pixels.
    pub kernel: usize,
    /// Stride `s` along both axes.
    pub stride: usize,
    /// Zero padding `p` on every side, in pixels.
    pub padding: usize,
    /// `O × C × K × K`, row-major (PyTorch layout).
    pub weight: Vec<f32>,
    /// `O`.
    pub bias: Vec<f32>,
}

impl Conv2d {
    /// A layer with zero parameters (initialise with [`crate::init`]).
    pub fn zeros(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            weight: vec![0.0; out_channels * in_channels * kernel * kernel],
            bias: vec![0.0; out_channels],
        }
    }

    /// The kernel geometry for a batch of `batch` images of `in_h × in_w` pixels.
    pub fn geometry(&self, batch: usize, in_h: usize, in_w: usize) -> ConvGeometry {
        ConvGeometry {
            batch,
            in_c: self.in_channels,
            in_h,
            in_w,
            out_c: self.out_channels,
            kh: self.kernel,
            kw: self.kernel,
            stride: self.stride,
            pad: self.padding,
        }
    }

    /// Output height and width for an `in_h × in_w` input, or `None` when the kernel
    /// does not fit the padded input or the stride is zero.
    pub fn out_hw(&self, in_h: usize, in_w: usize) -> Option<(usize, usize)> {
        let g = self.geometry(1, in_h, in_w);
        g.validate().ok()?;
        Some((g.out_h(), g.out_w()))
    }
}

/// out (B × O × OH × OW) = conv(inp (B × C × H × W), weight (O × C × K × K)) + bias (O),
/// then `max(·, 0)` when `relu`. With `pool`, `nn.MaxPool2d(2)` follows in the same
/// kernel pass, which never writes the convolution's output: `out` (and `argmax`, the
/// window indices, when given) are then `B × O × ⌊OH/2⌋ × ⌊OW/2⌋`, as the separate
/// pooling layer leaves them (the same bits). `argmax` is ignored without `pool`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    out: &mut [f32],
    inp: &[f32],
    layer: &Conv2d,
    batch: usize,
    in_hw: (usize, usize),
    relu: bool,
    pool: bool,
    argmax: Option<&mut [u32]>,
) -> Result<(), KernelError> {
    let g = layer.geometry(batch, in_hw.0, in_hw.1);
    let (w, b, par) = (&layer.weight, Some(&layer.bias[..]), Parallelism::Threads);
    if pool {
        kernels::conv::conv2d_forward_pooled(&g, inp, w, b, relu, out, argmax, par)
    } else {
        kernels::conv::conv2d_forward(&g, inp, w, b, relu, out, par)
    }
}

/// Backward of out = conv(inp, weight) + bias, given dout (B × O × OH × OW):
/// - dweight (O × C × K × K) = Σ_{b,y,x} dout[b, o, y, x] · inp[b, c, y·s + ky − p, x·s + kx − p]
/// - dbias (O) = Σ_{b,y,x} dout[b, o, y, x]
///
/// Both are overwritten (the kernel accumulates, so they are zeroed first).
/// - dinp (B × C × H × W), overwritten when asked for: the adjoint of the convolution.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    dinp: Option<&mut [f32]>,
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    layer: &Conv2d,
    batch: usize,
    in_hw: (usize, usize),
) -> Result<(), KernelError> {
    let g = layer.geometry(batch, in_hw.0, in_hw.1);
    dweight.fill(0.0);
    dbias.fill(0.0);
    kernels::conv::conv2d_backward(
        &g,
        inp,
        &layer.weight,
        dout,
        dinp,
        dweight,
        Some(dbias),
        Parallelism::Threads,
    )
}
