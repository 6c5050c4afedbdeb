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
//!
//! Two paths compute the same thing ([`ConvPath`]): `lowered` (im2col + GEMM over
//! runs of images, any stride) and `direct` (stride 1, vectorised over output rows,
//! no lowered matrix). [`conv2d_forward`] and [`conv2d_backward`] pick one by shape.
//!
//! Determinism: every output element is computed by one thread; weight and bias
//! gradients are summed per fixed-size run of images and the runs' partials added in
//! run order, so results are bit-identical for any thread count.

mod direct;
mod im2col;
mod lowered;

use crate::KernelError;
use crate::gemm::Parallelism;

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

/// Sums `xs` in a fixed order that vectorises: 16 interleaved partial sums, then those
/// added left to right. Used wherever a sum must not depend on how work was split.
pub(crate) fn sum_in_order(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += *v;
        }
    }
    for (l, v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += *v;
    }
    lanes.iter().sum()
}

/// `dst.copy_from_slice(src)` for the short rows of a convolution (tens of floats).
/// Below 64 floats it is at most one fixed-size copy each of 32, 16, 8, 4, 2 and 1
/// floats, with no loop (a loop of blocks would be turned back into a `memmove`
/// call, whose overhead is larger than the copy at these lengths). Panics if the
/// lengths differ.
#[inline]
pub(crate) fn copy_short(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    if src.len() >= 64 {
        dst.copy_from_slice(src);
        return;
    }
    let (mut d, mut s) = (dst, src);
    for block in [32, 16, 8, 4, 2, 1] {
        if s.len() >= block {
            let (dh, dt) = d.split_at_mut(block);
            let (sh, st) = s.split_at(block);
            match block {
                32 => copy_block::<32>(dh, sh),
                16 => copy_block::<16>(dh, sh),
                8 => copy_block::<8>(dh, sh),
                4 => copy_block::<4>(dh, sh),
                2 => copy_block::<2>(dh, sh),
                _ => dh[0] = sh[0],
            }
            (d, s) = (dt, st);
        }
    }
}

/// Copies exactly `N` floats as one array assignment (a fixed-size move, never a call).
#[inline(always)]
fn copy_block<const N: usize>(dst: &mut [f32], src: &[f32]) {
    let d: &mut [f32; N] = dst.try_into().expect("block of N");
    let s: &[f32; N] = src.try_into().expect("block of N");
    *d = *s;
}

/// Lowers `input` (`N × C × H × W`) into `cols` (row-major `(C·KH·KW) × (N·OH·OW)`, overwritten).
///
/// # Errors
/// [`KernelError::BadGeometry`] for an invalid geometry, [`KernelError::BadLength`]
/// when a buffer does not match it.
pub fn im2col(g: &ConvGeometry, input: &[f32], cols: &mut [f32]) -> Result<(), KernelError> {
    g.validate()?;
    check_len("input", input.len(), g.input_len())?;
    check_len("cols", cols.len(), g.col_rows() * g.col_cols())?;
    im2col::lower(g, input, g.batch, cols);
    Ok(())
}

/// The adjoint of [`im2col()`]: adds (`+=`) every element of `cols` (row-major
/// `(C·KH·KW) × (N·OH·OW)`) back into the input position it was read from,
/// accumulating into `grad_input` (`N × C × H × W`); padding positions are dropped.
///
/// # Errors
/// As [`im2col()`].
pub fn col2im(g: &ConvGeometry, cols: &[f32], grad_input: &mut [f32]) -> Result<(), KernelError> {
    g.validate()?;
    check_len("grad_input", grad_input.len(), g.input_len())?;
    check_len("cols", cols.len(), g.col_rows() * g.col_cols())?;
    im2col::raise_add(g, cols, g.batch, grad_input);
    Ok(())
}

/// Which implementation a convolution runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvPath {
    /// The fastest path for the shape (what [`conv2d_forward`] and [`conv2d_backward`] use).
    #[default]
    Auto,
    /// im2col + GEMM over runs of images; any geometry.
    Lowered,
    /// Direct, vectorised over output rows; stride 1 only (and, for the input
    /// gradient, padding below the kernel size).
    Direct,
}

impl ConvPath {
    /// The path [`ConvPath::Auto`] takes for a forward pass of `g`.
    pub fn for_forward(g: &ConvGeometry) -> Self {
        if direct::supports_forward(g) && prefers_direct(g) { Self::Direct } else { Self::Lowered }
    }

    /// The path [`ConvPath::Auto`] takes for a backward pass of `g`, with or without
    /// the input gradient.
    pub fn for_backward(g: &ConvGeometry, with_input: bool) -> Self {
        if direct::supports_backward(g, with_input) && prefers_direct(g) {
            Self::Direct
        } else {
            Self::Lowered
        }
    }
}

/// Where the direct kernels beat im2col + GEMM: few taps per output (the lowered GEMM
/// is thin in `K`) on rows wide enough to fill most of a vector's lanes.
fn prefers_direct(g: &ConvGeometry) -> bool {
    g.col_rows() <= 256 && g.out_w() >= 8
}

fn unsupported(path: &str, g: &ConvGeometry) -> KernelError {
    KernelError::BadGeometry(format!(
        "the {path} path needs stride 1 and padding below the kernel size, got stride {} pad {} kernel {}×{}",
        g.stride, g.pad, g.kh, g.kw
    ))
}

/// Convolution forward over a batch: `output = conv(input, weight) + bias`, then ReLU
/// when `relu` is set.
///
/// `input`: `N × C × H × W`; `weight`: `O × C × KH × KW`; `bias`: `O`;
/// `output`: `N × O × OH × OW`, overwritten. Chooses the fastest path for the shape.
///
/// # Errors
/// [`KernelError::BadGeometry`] for an invalid geometry, [`KernelError::BadLength`]
/// when a buffer does not match it.
pub fn conv2d_forward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    output: &mut [f32],
    parallelism: Parallelism,
) -> Result<(), KernelError> {
    conv2d_forward_with(ConvPath::Auto, g, input, weight, bias, relu, output, parallelism)
}

/// [`conv2d_forward`] followed by [`crate::pool::max_pool_2x2`], in one pass where the
/// direct path runs: each tile of the convolution is pooled while it is still in
/// registers, so its `N × O × OH × OW` output is never written (for LeNet-5's first
/// layer over a batch of 1000 images, 19 MB of writes and as many reads saved).
/// Equal bit for bit to the two calls.
///
/// `pooled`: `N × O × ⌊OH/2⌋ × ⌊OW/2⌋`, overwritten; `argmax`, when given, the same
/// shape, overwritten with each window's position in its `OH × OW` plane as
/// [`crate::pool::max_pool_2x2`] gives it (training needs it, inference does not).
///
/// # Errors
/// As [`conv2d_forward`], and [`KernelError::BadGeometry`] when `OH` or `OW` is below 2.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_pooled(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    pooled: &mut [f32],
    argmax: Option<&mut [u32]>,
    parallelism: Parallelism,
) -> Result<(), KernelError> {
    g.validate()?;
    let (oh, ow) = (g.out_h(), g.out_w());
    if oh < 2 || ow < 2 {
        return Err(KernelError::BadGeometry(format!("a 2 × 2 window does not fit a {oh} × {ow} output")));
    }
    check_len("input", input.len(), g.input_len())?;
    check_len("weight", weight.len(), g.weight_len())?;
    let pooled_len = g.batch * g.out_c * (oh / 2) * (ow / 2);
    check_len("pooled", pooled.len(), pooled_len)?;
    if let Some(a) = &argmax {
        check_len("argmax", a.len(), pooled_len)?;
    }
    if let Some(b) = bias {
        check_len("bias", b.len(), g.out_c)?;
    }
    if ConvPath::for_forward(g) == ConvPath::Direct && g.in_c > 0 && g.out_c > 0 {
        let output = direct::Output::Pooled { pooled, argmax: argmax.unwrap_or_default() };
        direct::forward(g, input, weight, bias, relu, output, parallelism);
        return Ok(());
    }
    // Elsewhere the two passes, with the pooling's own buffers.
    let mut full = vec![0.0f32; g.output_len()];
    conv2d_forward(g, input, weight, bias, relu, &mut full, parallelism)?;
    let mut scratch = Vec::new();
    let argmax = match argmax {
        Some(a) => a,
        None => {
            scratch.resize(pooled_len, 0);
            &mut scratch[..]
        }
    };
    crate::pool::max_pool_2x2(&full, (oh, ow), pooled, argmax)
}

/// [`conv2d_forward`] on a chosen [`ConvPath`] (benchmarks and tests use it to exercise
/// each path on its own).
///
/// # Errors
/// As [`conv2d_forward`], and [`KernelError::BadGeometry`] when `path` cannot handle `g`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_with(
    path: ConvPath,
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
    let path = if path == ConvPath::Auto { ConvPath::for_forward(g) } else { path };
    match path {
        ConvPath::Direct if !direct::supports_forward(g) => Err(unsupported("direct", g)),
        ConvPath::Direct => {
            direct::forward(g, input, weight, bias, relu, direct::Output::Full(output), parallelism);
            Ok(())
        }
        _ => lowered::forward(g, input, weight, bias, relu, output, parallelism),
    }
}

/// Convolution backward over a batch, from `grad_output` (`N × O × OH × OW`):
/// `grad_input` (`N × C × H × W`) is overwritten when given; `grad_weight`
/// (`O × C × KH × KW`) and `grad_bias` (`O`) are accumulated (`+=`).
///
/// # Errors
/// [`KernelError::BadGeometry`] for an invalid geometry, [`KernelError::BadLength`]
/// when a buffer does not match it.
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
    conv2d_backward_with(
        ConvPath::Auto,
        g,
        input,
        weight,
        grad_output,
        grad_input,
        grad_weight,
        grad_bias,
        parallelism,
    )
}

/// [`conv2d_backward`] on a chosen [`ConvPath`].
///
/// # Errors
/// As [`conv2d_backward`], and [`KernelError::BadGeometry`] when `path` cannot handle `g`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_with(
    path: ConvPath,
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
    if let Some(gi) = grad_input.as_deref() {
        check_len("grad_input", gi.len(), g.input_len())?;
    }
    if let Some(gb) = grad_bias.as_deref() {
        check_len("grad_bias", gb.len(), g.out_c)?;
    }
    let with_input = grad_input.is_some();
    let path = if path == ConvPath::Auto { ConvPath::for_backward(g, with_input) } else { path };
    match path {
        ConvPath::Direct if !direct::supports_backward(g, with_input) => Err(unsupported("direct", g)),
        ConvPath::Direct => {
            direct::backward(g, input, weight, grad_output, grad_input, grad_weight, grad_bias, parallelism);
            Ok(())
        }
        _ => {
            lowered::backward(g, input, weight, grad_output, grad_input, grad_weight, grad_bias, parallelism)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{copy_short, sum_in_order};

    /// Every length around the block sizes and the 64-float switch to `copy_from_slice`.
    #[test]
    fn copy_short_copies_every_length() {
        for len in 0..=70 {
            let src: Vec<f32> = (0..len).map(|i| i as f32 + 0.5).collect();
            let mut dst = vec![-1.0f32; len];
            copy_short(&mut dst, &src);
            assert_eq!(dst, src, "length {len}");
        }
    }

    #[test]
    fn sum_in_order_matches_a_plain_sum_of_exact_values() {
        // Small integers are exact in f32, so any order gives the same sum.
        for len in 0..=40 {
            let xs: Vec<f32> = (0..len).map(|i| (i % 7) as f32 - 3.0).collect();
            assert_eq!(sum_in_order(&xs), xs.iter().sum::<f32>(), "length {len}");
        }
    }
}
