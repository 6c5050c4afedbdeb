//! Convolution over NCHW batches: geometry, im2col/col2im lowering, and the forward
//! and backward entry points that `net`'s Conv2d calls.
//!
//! Dimension legend: `N` batch, `C` input channels, `O` output channels, `H × W`
//! input height and width, `OH × OW` output height and width, `KH × KW` kernel,
//! `s` stride, `p` zero padding. `OH = (H + 2p − KH) / s + 1`.
//!
//! Lowering: `cols` is a row-major `(C·KH·KW) × (N·OH·OW)` matrix whose row
//! `(c, ky, kx)` and column `(n, y, x)` holds `in[n, c, y·s + ky − p, x·s + kx − p]`
//! (zero in the padding). The forward pass is then `out = W · cols` with `W` the
//! `O × (C·KH·KW)` weight matrix.

use crate::KernelError;
use crate::gemm::{Bias, Epilogue, MatMut, MatRef, Parallelism, gemm};

/// The shape of one convolution: batch, channels, spatial sizes, kernel, stride, padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    /// Images in the batch (`N`).
    pub batch: usize,
    /// Input channels (`C`).
    pub in_c: usize,
    /// Input height in pixels (`H`).
    pub in_h: usize,
    /// Input width in pixels (`W`).
    pub in_w: usize,
    /// Output channels (`O`).
    pub out_c: usize,
    /// Kernel height (`KH`).
    pub kh: usize,
    /// Kernel width (`KW`).
    pub kw: usize,
    /// Stride, the same along both axes (`s ≥ 1`).
    pub stride: usize,
    /// Zero padding on every side (`p`).
    pub pad: usize,
}

impl ConvGeometry {
    /// Checks that the geometry has a non-empty output and a non-zero stride.
    pub fn validate(&self) -> Result<(), KernelError> {
        if self.stride == 0 {
            return Err(KernelError::BadGeometry("stride must be at least 1".into()));
        }
        if self.kh == 0 || self.kw == 0 {
            return Err(KernelError::BadGeometry("kernel must be at least 1 × 1".into()));
        }
        if self.in_h + 2 * self.pad < self.kh || self.in_w + 2 * self.pad < self.kw {
            return Err(KernelError::BadGeometry(format!(
                "kernel {}×{} is larger than the padded input {}×{}",
                self.kh,
                self.kw,
                self.in_h + 2 * self.pad,
                self.in_w + 2 * self.pad
            )));
        }
        Ok(())
    }
    /// Output height `OH = (H + 2p − KH) / s + 1`.
    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.pad - self.kh) / self.stride + 1
    }
    /// Output width `OW = (W + 2p − KW) / s + 1`.
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.pad - self.kw) / self.stride + 1
    }
    /// Elements of the input batch, `N·C·H·W`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_c * self.in_h * self.in_w
    }
    /// Elements of the output batch, `N·O·OH·OW`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_c * self.out_h() * self.out_w()
    }
    /// Elements of the weight tensor, `O·C·KH·KW`.
    pub fn weight_len(&self) -> usize {
        self.out_c * self.in_c * self.kh * self.kw
    }
    /// Rows of the lowered matrix, `C·KH·KW` (the GEMM's `k`).
    pub fn col_rows(&self) -> usize {
        self.in_c * self.kh * self.kw
    }
    /// Columns of the lowered matrix, `N·OH·OW`.
    pub fn col_cols(&self) -> usize {
        self.batch * self.out_h() * self.out_w()
    }
    /// The input pixel `(iy, ix)` read by output `(y, x)` at kernel tap `(ky, kx)`,
    /// or `None` when it falls in the zero padding.
    #[inline]
    pub fn input_pos(&self, y: usize, x: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let iy = (y * self.stride + ky).checked_sub(self.pad)?;
        let ix = (x * self.stride + kx).checked_sub(self.pad)?;
        (iy < self.in_h && ix < self.in_w).then_some((iy, ix))
    }
    /// Multiply-accumulates of one forward pass over the batch.
    pub fn macs(&self) -> usize {
        self.output_len() * self.col_rows()
    }
}

fn check_len(name: &'static str, len: usize, expected: usize) -> Result<(), KernelError> {
    if len == expected { Ok(()) } else { Err(KernelError::BadLength { name, len, expected }) }
}

/// Lowers `input` (`N × C × H × W`) into `cols` (row-major `(C·KH·KW) × (N·OH·OW)`, overwritten).
pub fn im2col(g: &ConvGeometry, input: &[f32], cols: &mut [f32]) -> Result<(), KernelError> {
    g.validate()?;
    check_len("input", input.len(), g.input_len())?;
    check_len("cols", cols.len(), g.col_rows() * g.col_cols())?;
    let (oh, ow) = (g.out_h(), g.out_w());
    let ncols = g.col_cols();
    for c in 0..g.in_c {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = (c * g.kh + ky) * g.kw + kx;
                let dst = &mut cols[row * ncols..(row + 1) * ncols];
                for n in 0..g.batch {
                    let plane = &input[(n * g.in_c + c) * g.in_h * g.in_w..][..g.in_h * g.in_w];
                    for y in 0..oh {
                        for x in 0..ow {
                            dst[(n * oh + y) * ow + x] = match g.input_pos(y, x, ky, kx) {
                                Some((iy, ix)) => plane[iy * g.in_w + ix],
                                None => 0.0,
                            };
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The adjoint of [`im2col`]: adds (`+=`) every element of `cols` back into the input
/// position it was read from, accumulating into `grad_input` (`N × C × H × W`).
pub fn col2im(g: &ConvGeometry, cols: &[f32], grad_input: &mut [f32]) -> Result<(), KernelError> {
    g.validate()?;
    check_len("grad_input", grad_input.len(), g.input_len())?;
    check_len("cols", cols.len(), g.col_rows() * g.col_cols())?;
    let (oh, ow) = (g.out_h(), g.out_w());
    let ncols = g.col_cols();
    for c in 0..g.in_c {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = (c * g.kh + ky) * g.kw + kx;
                let src = &cols[row * ncols..(row + 1) * ncols];
                for n in 0..g.batch {
                    let base = (n * g.in_c + c) * g.in_h * g.in_w;
                    for y in 0..oh {
                        for x in 0..ow {
                            if let Some((iy, ix)) = g.input_pos(y, x, ky, kx) {
                                grad_input[base + iy * g.in_w + ix] += src[(n * oh + y) * ow + x];
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Convolution forward over a batch: `output = conv(input, weight) + bias`, then ReLU
/// when `relu` is set.
///
/// `input`: `N × C × H × W`; `weight`: `O × C × KH × KW`; `bias`: `O`;
/// `output`: `N × O × OH × OW`, overwritten. Chooses the fastest path for the shape.
pub fn conv2d_forward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    output: &mut [f32],
    parallelism: Parallelism,
) -> Result<(), KernelError> {
    g.validate()?;
    check_len("input", input.len(), g.input_len())?;
    check_len("weight", weight.len(), g.weight_len())?;
    check_len("output", output.len(), g.output_len())?;
    if let Some(b) = bias {
        check_len("bias", b.len(), g.out_c)?;
    }
    // One image at a time: out[n] (O × OH·OW) = W (O × C·KH·KW) · cols[n].
    let per_image = ConvGeometry { batch: 1, ..*g };
    let k = g.col_rows();
    let spatial = g.out_h() * g.out_w();
    let mut cols = vec![0.0f32; k * spatial];
    let w = MatRef::row_major(weight, g.out_c, k)?;
    let in_len = per_image.input_len();
    for (img, out) in input.chunks_exact(in_len).zip(output.chunks_exact_mut(g.out_c * spatial)) {
        im2col(&per_image, img, &mut cols)?;
        let b = MatRef::row_major(&cols, k, spatial)?;
        let mut c = MatMut::row_major(out, g.out_c, spatial)?;
        let epilogue = Epilogue { bias: bias.map_or(Bias::None, Bias::PerRow), relu, relu_mask: None };
        gemm(1.0, w, b, 0.0, &mut c, &epilogue, parallelism)?;
    }
    Ok(())
}

/// Convolution backward over a batch, from `grad_output` (`N × O × OH × OW`):
/// `grad_input` (`N × C × H × W`) is overwritten when given; `grad_weight`
/// (`O × C × KH × KW`) and `grad_bias` (`O`) are accumulated (`+=`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
    parallelism: Parallelism,
) -> Result<(), KernelError> {
    g.validate()?;
    check_len("input", input.len(), g.input_len())?;
    check_len("weight", weight.len(), g.weight_len())?;
    check_len("grad_output", grad_output.len(), g.output_len())?;
    check_len("grad_weight", grad_weight.len(), g.weight_len())?;
    let per_image = ConvGeometry { batch: 1, ..*g };
    let k = g.col_rows();
    let spatial = g.out_h() * g.out_w();
    let mut cols = vec![0.0f32; k * spatial];
    let in_len = per_image.input_len();
    let out_len = g.out_c * spatial;
    let mut grad_input = grad_input;
    if let Some(gi) = grad_input.as_deref_mut() {
        check_len("grad_input", gi.len(), g.input_len())?;
        gi.fill(0.0);
    }
    if let Some(gb) = grad_bias {
        check_len("grad_bias", gb.len(), g.out_c)?;
        for go in grad_output.chunks_exact(out_len) {
            for (o, row) in go.chunks_exact(spatial).enumerate() {
                gb[o] += row.iter().sum::<f32>();
            }
        }
    }
    let w = MatRef::row_major(weight, g.out_c, k)?;
    for n in 0..g.batch {
        let img = &input[n * in_len..(n + 1) * in_len];
        let go = MatRef::row_major(&grad_output[n * out_len..(n + 1) * out_len], g.out_c, spatial)?;
        // dW (O × K) += dY (O × S) · colsᵀ (S × K).
        im2col(&per_image, img, &mut cols)?;
        let colsm = MatRef::row_major(&cols, k, spatial)?;
        let mut gw = MatMut::row_major(grad_weight, g.out_c, k)?;
        gemm(1.0, go, colsm.t(), 1.0, &mut gw, &Epilogue::NONE, parallelism)?;
        if let Some(gi) = grad_input.as_deref_mut() {
            // dcols (K × S) = Wᵀ (K × O) · dY (O × S), then scatter back.
            let mut dcols = MatMut::row_major(&mut cols, k, spatial)?;
            gemm(1.0, w.t(), go, 0.0, &mut dcols, &Epilogue::NONE, parallelism)?;
            col2im(&per_image, &cols, &mut gi[n * in_len..(n + 1) * in_len])?;
        }
    }
    Ok(())
}
