//! Naive reference implementations: the definitions the fast kernels are tested
//! against. Plain loops, `f64` accumulation is deliberately *not* used so that the
//! reference sums in the same `k` order as a single microkernel would.

use crate::conv::ConvGeometry;
use crate::gemm::{Epilogue, MatMut, MatRef};

/// `C ← α·A·B + β·C` then `epilogue`, by the textbook triple loop. β = 0 does not read C.
pub fn gemm_naive(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
    epilogue: &Epilogue<'_>,
) {
    let (m, n, k) = (c.rows(), c.cols(), a.cols());
    let (rs, cs) = (c.row_stride(), c.col_stride());
    let data = c.data_mut();
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a.at(i, p) * b.at(p, j);
            }
            let idx = i * rs + j * cs;
            let prior = if beta == 0.0 { 0.0 } else { beta * data[idx] };
            data[idx] = epilogue.apply(i, j, alpha * acc + prior);
        }
    }
}

/// Direct convolution, forward: `out[n, o, y, x] = bias[o] + Σ_{c,ky,kx} w[o, c, ky, kx] ·
/// in[n, c, y·s + ky − p, x·s + kx − p]` (zero outside the input), NCHW layouts.
///
/// `input`: `batch × in_c × in_h × in_w`; `weight`: `out_c × in_c × kh × kw`;
/// `bias`: `out_c`; `output`: `batch × out_c × out_h × out_w` (overwritten).
pub fn conv2d_naive(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    for n in 0..g.batch {
        for o in 0..g.out_c {
            for y in 0..oh {
                for x in 0..ow {
                    let mut acc = bias.map_or(0.0, |b| b[o]);
                    for c in 0..g.in_c {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                if let Some((iy, ix)) = g.input_pos(y, x, ky, kx) {
                                    acc += weight[((o * g.in_c + c) * g.kh + ky) * g.kw + kx]
                                        * input[((n * g.in_c + c) * g.in_h + iy) * g.in_w + ix];
                                }
                            }
                        }
                    }
                    output[((n * g.out_c + o) * oh + y) * ow + x] = acc;
                }
            }
        }
    }
}

/// Direct convolution, backward: accumulates (`+=`) into `grad_input` (if given),
/// `grad_weight` and `grad_bias` from `grad_output` (`batch × out_c × out_h × out_w`).
pub fn conv2d_backward_naive(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    mut grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut gb = grad_bias;
    for n in 0..g.batch {
        for o in 0..g.out_c {
            for y in 0..oh {
                for x in 0..ow {
                    let go = grad_output[((n * g.out_c + o) * oh + y) * ow + x];
                    if let Some(gb) = gb.as_deref_mut() {
                        gb[o] += go;
                    }
                    for c in 0..g.in_c {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                if let Some((iy, ix)) = g.input_pos(y, x, ky, kx) {
                                    let wi = ((o * g.in_c + c) * g.kh + ky) * g.kw + kx;
                                    let ii = ((n * g.in_c + c) * g.in_h + iy) * g.in_w + ix;
                                    grad_weight[wi] += go * input[ii];
                                    if let Some(gi) = grad_input.as_deref_mut() {
                                        gi[ii] += go * weight[wi];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
