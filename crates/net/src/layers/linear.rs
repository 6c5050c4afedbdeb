//! Fully connected layer, PyTorch's `nn.Linear`: `out = inp · Wᵀ + b`.
//!
//! Dimension legend: `B` batch, `I` in_features, `O` out_features.
//! Layouts: `inp` row-major `B × I`, `out` row-major `B × O`, `weight` row-major
//! `O × I` (PyTorch's layout), `bias` `O`.

use std::time::{Duration, Instant};

use kernels::{Bias, Epilogue, KernelError, MatMut, MatRef, Parallelism, gemm, gemm_with_descend};

/// A fully connected layer with owned parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// Input features `I`.
    pub in_features: usize,
    /// Output features `O`.
    pub out_features: usize,
    /// `O × I`, row-major (PyTorch layout).
    pub weight: Vec<f32>,
    /// `O`.
    pub bias: Vec<f32>,
}

impl Linear {
    /// A layer with zero parameters (initialise with [`crate::init`]).
    pub fn zeros(in_features: usize, out_features: usize) -> Self {
        Linear {
            in_features,
            out_features,
            weight: vec![0.0; in_features * out_features],
            bias: vec![0.0; out_features],
        }
    }

    /// Multiply-accumulates per image, `I·O`.
    pub fn macs(&self) -> usize {
        self.in_features * self.out_features
    }
}

/// out (B × O) = inp (B × I) · weightᵀ (I × O) + bias (O), then `max(·, 0)` when `relu`.
/// `bias` is the layer's own, or [`offset_bias`]'s when an input offset is folded in.
pub(crate) fn forward(
    out: &mut [f32],
    inp: &[f32],
    layer: &Linear,
    bias: &[f32],
    batch: usize,
    relu: bool,
) -> Result<(), KernelError> {
    let (i, o) = (layer.in_features, layer.out_features);
    let x = MatRef::row_major(inp, batch, i)?;
    let w = MatRef::row_major(&layer.weight, o, i)?;
    let mut y = MatMut::row_major(out, batch, o)?;
    let epilogue = Epilogue { bias: Bias::PerCol(bias), relu, relu_mask: None };
    gemm(1.0, x, w.t(), 0.0, &mut y, &epilogue, Parallelism::Threads)
}

/// `out[o] = bias[o] + offset · Σᵢ weight[o, i]` (`O` values): the bias with which
/// `inp · Wᵀ + out` computes `(inp + offset) · Wᵀ + bias`, an offset added to every
/// input folded into the layer. Rows are summed in `f64` and rounded once, each in the
/// same order whatever the thread count (the team splits the rows).
pub(crate) fn offset_bias(layer: &Linear, offset: f32, out: &mut [f32]) {
    let inputs = layer.in_features.max(1);
    // Rows per part: at least 64, so that a part's overhead is small beside its row sums.
    let per = layer.out_features.div_ceil(kernels::team::threads()).max(64);
    let parts: Vec<_> =
        layer.weight.chunks(per * inputs).zip(out.chunks_mut(per).zip(layer.bias.chunks(per))).collect();
    kernels::team::for_each(parts, |_, (weights, (out, bias))| {
        for ((o, &b), row) in out.iter_mut().zip(bias).zip(weights.chunks(inputs)) {
            *o = (f64::from(b) + f64::from(offset) * row_sum(row)) as f32;
        }
    });
}

/// `Σ row` in `f64`: 32 interleaved partial sums (four independent vector chains,
/// rather than one add's latency per element), then folded pairwise in a fixed order.
fn row_sum(row: &[f32]) -> f64 {
    const PARTS: usize = 32;
    let mut acc = [0.0f64; PARTS];
    let chunks = row.chunks_exact(PARTS);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f64::from(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(tail) {
        *a += f64::from(v);
    }
    let mut n = PARTS;
    while n > 1 {
        n /= 2;
        for l in 0..n {
            acc[l] += acc[l + n];
        }
    }
    acc[0]
}

/// The weights a backward pass reads, and whether it also takes the SGD step on them.
#[derive(Debug)]
pub(crate) enum Weights<'a> {
    /// Read only: `O × I`, row-major.
    Read(&'a [f32]),
    /// `O × I`, row-major, read for the input gradient and then updated as
    /// `W ← W − lr·dweight` with the finished weight gradient (which is then the
    /// velocity; see `Sgd::forward_backward_step`), in the same GEMM.
    Descend(&'a mut [f32], f32),
}

/// Backward of out = inp · Wᵀ + b, given dout (B × O):
/// - dinp (B × I) = dout (B × O) · weight (O × I), overwritten, when asked for. When
///   `mask` (B × I, the output of a ReLU that fed this layer) is given, the ReLU's
///   backward is fused in: dinp[b, i] = 0 where mask[b, i] ≤ 0. Computed first, so
///   that it reads the weights before a [`Weights::Descend`] changes them.
/// - dweight (O × I) ← β·dweight + doutᵀ (O × B) · inp (B × I), with `(dweight, β)`;
///   β = 0 overwrites (C is not read: no zeroing pass); then the descent, if any
/// - dbias (O) = Σ_b dout[b, :], overwritten
///
/// With `input_offset = (c, scratch)`, `inp` is the layer's input minus `c` in every
/// element (see [`offset_bias`]): the weight gradient adds `c·dbias[o]` to each row `o`
/// of `doutᵀ · inp`, in the GEMM's epilogue, `scratch` (`O`) holding `c·dbias`.
///
/// With `input_time`, the input gradient's GEMM is timed and its duration added there.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    dinp: Option<&mut [f32]>,
    (dweight, beta): (&mut [f32], f32),
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    (layer, weights): (&Linear, Weights<'_>),
    batch: usize,
    mask: Option<&[f32]>,
    input_offset: Option<(f32, &mut [f32])>,
    input_time: Option<&mut Duration>,
) -> Result<(), KernelError> {
    let (i, o) = (layer.in_features, layer.out_features);
    let dy = MatRef::row_major(dout, batch, o)?;
    let x = MatRef::row_major(inp, batch, i)?;
    let w: &[f32] = match &weights {
        Weights::Read(w) => w,
        Weights::Descend(w, _) => w,
    };
    if let Some(dinp) = dinp {
        let w = MatRef::row_major(w, o, i)?;
        let mut dx = MatMut::row_major(dinp, batch, i)?;
        let relu_mask = match mask {
            Some(m) => Some(MatRef::row_major(m, batch, i)?),
            None => None,
        };
        let epilogue = Epilogue { bias: Bias::None, relu: false, relu_mask };
        let start = input_time.as_ref().map(|_| Instant::now());
        gemm(1.0, dy, w, 0.0, &mut dx, &epilogue, Parallelism::Threads)?;
        if let (Some(total), Some(start)) = (input_time, start) {
            *total += start.elapsed();
        }
    }
    // The bias gradient sums over the batch in a fixed order (row by row), so it is
    // the same for any thread count. First: a folded input offset needs it below.
    dbias.fill(0.0);
    for row in dout.chunks_exact(o) {
        for (g, &d) in dbias.iter_mut().zip(row) {
            *g += d;
        }
    }
    let epilogue = match input_offset {
        Some((offset, scratch)) => {
            let scratch = &mut scratch[..o];
            for (s, &g) in scratch.iter_mut().zip(dbias.iter()) {
                *s = offset * g;
            }
            Epilogue { bias: Bias::PerRow(scratch), relu: false, relu_mask: None }
        }
        None => Epilogue::NONE,
    };
    let mut dw = MatMut::row_major(dweight, o, i)?;
    match weights {
        Weights::Read(_) => gemm(1.0, dy.t(), x, beta, &mut dw, &epilogue, Parallelism::Threads)?,
        Weights::Descend(w, lr) => {
            let mut w = MatMut::row_major(w, o, i)?;
            gemm_with_descend(
                1.0,
                dy.t(),
                x,
                beta,
                &mut dw,
                &epilogue,
                Some((&mut w, lr)),
                Parallelism::Threads,
            )?
        }
    }
    Ok(())
}
