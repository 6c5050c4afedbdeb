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
//!
//! Threads: callers choose the thread count by running inside a rayon pool
//! (`pool.install(|| …)`); `net` and `kernels` use that many threads of
//! `kernels::team`, and results are bit-identical for any thread count.

mod error;
pub mod init;
pub mod layers;
mod loss;
mod model;
pub mod model_file;
pub mod sgd;
pub mod spec;
mod train;

pub use error::NetError;
pub use init::Init;
pub use layers::{Conv2d, Layer, Linear, MaxPool2d};
pub use model::{GradientFn, LayerTime, Model, OutputFn, Workspace};
pub use model_file::{load, save};
pub use sgd::{Schedule, Sgd};
pub use spec::{LayerSpec, parse_spec};
pub use train::{
    EpochStats, Evaluation, TrainConfig, TrainObserver, TrainReport, evaluate, fold_centring, train,
    training_input,
};
