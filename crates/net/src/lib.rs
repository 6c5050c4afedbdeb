//! Neural networks on the CPU: layers, losses, SGD with momentum, training,
//! evaluation and safetensors model files.
//!
//! Owns: the layers (Linear, Conv2d, ReLU, MaxPool2d, Flatten) as forward/backward
//! pairs over `f32` NCHW batches, softmax cross-entropy, models built from spec
//! strings, initialisation, SGD, the training loop and model files laid out as
//! `torch.nn.Sequential.state_dict()`.
//!
//! Must not know about: pruning, significance criteria or experiments (those live in
//! `prune` and `xtask`), nor SIMD or cache blocking (those live in `kernels`). It
//! contains no `unsafe`.
