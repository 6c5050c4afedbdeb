//! Convolution as GEMM over im2col'd runs of images (the general path: any stride).
//!
//! The batch is cut into runs of [`run_images`] consecutive images, a number that
//! depends only on the geometry. For a run of `B` images the forward pass is one GEMM
//! `out (O × B·S) = W (O × K) · cols (K × B·S)` with `K = C·KH·KW`, `S = OH·OW`, bias
//! and ReLU fused in its epilogue; the backward pass computes the run's weight
//! gradient `dY (O × B·S) · colsᵀ` and `dcols = Wᵀ · dY`, scattered back by col2im.
//! Runs are spread over the [`team`]'s threads; their weight-gradient partials are added in
//! run order afterwards, so the result does not depend on the thread count.

use super::im2col::{lower, raise_add};
use super::{ConvGeometry, sum_in_order};
use crate::KernelError;
use crate::gemm::{Bias, Epilogue, MatMut, MatRef, Parallelism, gemm};
use crate::team;

/// Columns of the lowered matrix a run aims for: enough for the GEMM to block well,
/// few enough that `cols` (`K × B·S`) stays in the L2 cache for LeNet's layers.
const RUN_COLUMNS: usize = 1536;

/// Images per run: `⌈RUN_COLUMNS / (OH·OW)⌉`, at least 1 and at most the batch.
/// It depends on the geometry only (never on the thread count), which fixes the
/// order in which weight gradients are summed.
pub(super) fn run_images(g: &ConvGeometry) -> usize {
    RUN_COLUMNS.div_ceil(g.out_h() * g.out_w()).clamp(1, g.batch.max(1))
}

/// Scratch buffers one worker reuses across runs.
#[derive(Default)]
struct Scratch {
    cols: Vec<f32>,
    out: Vec<f32>,
}

fn resized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.resize(len, 0.0);
    &mut buf[..len]
}

/// Forward over the batch; lengths have been checked by the caller.
pub(super) fn forward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    output: &mut [f32],
    parallelism: Parallelism,
) -> Result<(), KernelError> {
    let run = run_images(g);
    let in_img = g.in_c * g.in_h * g.in_w;
    let out_img = g.out_c * g.out_h() * g.out_w();
    if in_img == 0 || out_img == 0 || g.batch == 0 {
        return Ok(());
    }
    let runs = g.batch.div_ceil(run);
    let one_run = |scratch: &mut Scratch, (img, out): (&[f32], &mut [f32]), inner: Parallelism| {
        forward_run(g, img, weight, bias, relu, out, scratch, inner)
    };
    if parallelism == Parallelism::Threads && runs > 1 {
        let pairs = input.chunks(run * in_img).zip(output.chunks_mut(run * out_img)).collect();
        team::map_init(pairs, Scratch::default, |s, _, pair| one_run(s, pair, Parallelism::None))
            .into_iter()
            .collect()
    } else {
        let mut scratch = Scratch::default();
        for pair in input.chunks(run * in_img).zip(output.chunks_mut(run * out_img)) {
            one_run(&mut scratch, pair, parallelism)?;
        }
        Ok(())
    }
}

/// One run of `B = input.len() / (C·H·W)` images: im2col, one GEMM, scatter to NCHW.
#[allow(clippy::too_many_arguments)]
fn forward_run(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    output: &mut [f32],
    scratch: &mut Scratch,
    parallelism: Parallelism,
) -> Result<(), KernelError> {
    let images = input.len() / (g.in_c * g.in_h * g.in_w);
    let (k, s) = (g.col_rows(), g.out_h() * g.out_w());
    let cols = resized(&mut scratch.cols, k * images * s);
    lower(g, input, images, cols);
    let w = MatRef::row_major(weight, g.out_c, k)?;
    let b = MatRef::row_major(cols, k, images * s)?;
    let epilogue = Epilogue { bias: bias.map_or(Bias::None, Bias::PerRow), relu, relu_mask: None };
    if images == 1 {
        // One image: `O × S` is already the NCHW layout of the output.
        let mut c = MatMut::row_major(output, g.out_c, s)?;
        return gemm(1.0, w, b, 0.0, &mut c, &epilogue, parallelism);
    }
    let tmp = resized(&mut scratch.out, g.out_c * images * s);
    let mut c = MatMut::row_major(tmp, g.out_c, images * s)?;
    gemm(1.0, w, b, 0.0, &mut c, &epilogue, parallelism)?;
    // tmp[o][n·S + j] → out[n][o][j].
    for (o, row) in tmp.chunks_exact(images * s).enumerate() {
        for (n, src) in row.chunks_exact(s).enumerate() {
            output[(n * g.out_c + o) * s..][..s].copy_from_slice(src);
        }
    }
    Ok(())
}

/// Backward over the batch; lengths have been checked by the caller. `grad_input` is
/// overwritten, `grad_weight` and `grad_bias` accumulated.
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
) -> Result<(), KernelError> {
    let run = run_images(g);
    let in_img = g.in_c * g.in_h * g.in_w;
    let out_img = g.out_c * g.out_h() * g.out_w();
    if g.batch == 0 || out_img == 0 {
        if let Some(gi) = grad_input {
            gi.fill(0.0);
        }
        return Ok(());
    }
    let runs = g.batch.div_ceil(run);
    let gi_runs: Vec<Option<&mut [f32]>> = match grad_input {
        Some(gi) if in_img > 0 => gi.chunks_mut(run * in_img).map(Some).collect(),
        _ => (0..runs).map(|_| None).collect(),
    };
    let one_run = |scratch: &mut Scratch, (r, gi): (usize, Option<&mut [f32]>), inner: Parallelism| {
        let images = run.min(g.batch - r * run);
        let img = &input[r * run * in_img..][..images * in_img];
        let go = &grad_output[r * run * out_img..][..images * out_img];
        backward_run(g, img, weight, go, gi, scratch, inner)
    };
    let partials: Vec<Partial> = if parallelism == Parallelism::Threads && runs > 1 {
        team::map_init(gi_runs, Scratch::default, |s, r, gi| one_run(s, (r, gi), Parallelism::None))
            .into_iter()
            .collect::<Result<_, _>>()?
    } else {
        let mut scratch = Scratch::default();
        gi_runs
            .into_iter()
            .enumerate()
            .map(|pair| one_run(&mut scratch, pair, parallelism))
            .collect::<Result<_, _>>()?
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
    Ok(())
}

/// One run's contribution to the weight (`O × C·KH·KW`) and bias (`O`) gradients.
pub(super) struct Partial {
    pub(super) weight: Vec<f32>,
    pub(super) bias: Vec<f32>,
}

/// Bias gradient of a run: `Σ_n Σ_j dY[n, o, j]` per channel, summed in a fixed order.
pub(super) fn bias_partial(grad_output: &[f32], out_c: usize, spatial: usize) -> Vec<f32> {
    let mut bias = vec![0.0f32; out_c];
    for img in grad_output.chunks_exact(out_c * spatial) {
        for (b, row) in bias.iter_mut().zip(img.chunks_exact(spatial)) {
            *b += sum_in_order(row);
        }
    }
    bias
}

fn backward_run(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    grad_input: Option<&mut [f32]>,
    scratch: &mut Scratch,
    parallelism: Parallelism,
) -> Result<Partial, KernelError> {
    let images = grad_output.len() / (g.out_c * g.out_h() * g.out_w());
    let (k, s) = (g.col_rows(), g.out_h() * g.out_w());
    let bias = bias_partial(grad_output, g.out_c, s);
    // dY as `O × B·S`: for one image that is its NCHW layout; otherwise gather.
    let dy: &[f32] = if images == 1 {
        grad_output
    } else {
        let t = resized(&mut scratch.out, g.out_c * images * s);
        for (n, img) in grad_output.chunks_exact(g.out_c * s).enumerate() {
            for (o, src) in img.chunks_exact(s).enumerate() {
                t[o * images * s + n * s..][..s].copy_from_slice(src);
            }
        }
        t
    };
    let dy = MatRef::row_major(dy, g.out_c, images * s)?;
    let cols = resized(&mut scratch.cols, k * images * s);
    lower(g, input, images, cols);
    // dW (O × K) = dY (O × B·S) · colsᵀ (B·S × K).
    let mut dw = vec![0.0f32; g.out_c * k];
    {
        let colsm = MatRef::row_major(cols, k, images * s)?;
        let mut dwm = MatMut::row_major(&mut dw, g.out_c, k)?;
        gemm(1.0, dy, colsm.t(), 0.0, &mut dwm, &Epilogue::NONE, parallelism)?;
    }
    if let Some(gi) = grad_input {
        // dcols (K × B·S) = Wᵀ (K × O) · dY (O × B·S), then scattered back onto the images.
        let w = MatRef::row_major(weight, g.out_c, k)?;
        let mut dcols = MatMut::row_major(cols, k, images * s)?;
        gemm(1.0, w.t(), dy, 0.0, &mut dcols, &Epilogue::NONE, parallelism)?;
        gi.fill(0.0);
        raise_add(g, cols, images, gi);
    }
    Ok(Partial { weight: dw, bias })
}
