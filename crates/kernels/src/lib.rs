//! The numerical core of actprune: single-precision GEMM and the convolution
//! kernels that every layer of `net` runs on.
//!
//! Owns: `C ← α·op(A)·op(B) + β·C` over strided matrices ([`gemm()`]), with fused
//! epilogues (bias, ReLU, ReLU mask); im2col/col2im and direct convolution over
//! NCHW batches ([`conv`]); 2 × 2 max pooling with argmax and its adjoint
//! ([`pool`]); the naive reference implementations the fast paths are
//! tested against ([`reference`](mod@reference)); the spin-waiting threads that run every
//! parallel region of the workspace ([`team`]).
//!
//! Must not know about: layers, models, losses, training, datasets or pruning. It
//! sees slices of `f32`, shapes and strides, nothing more. `unsafe` is allowed here
//! (and in `mnist-io`) only; every block carries a `// SAFETY:` line.

mod claims;
pub mod conv;
mod error;
pub mod gemm;
pub mod pool;
pub mod reference;
mod reuse;
pub mod simd;
pub mod team;
mod transpose;

pub use conv::ConvGeometry;
pub use error::KernelError;
pub use gemm::{Bias, Epilogue, MatMut, MatRef, Parallelism, gemm, gemm_with_descend};
pub use simd::SimdPath;
