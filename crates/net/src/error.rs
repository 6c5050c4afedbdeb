//! The error type of the `net` crate.

use std::path::PathBuf;

use kernels::KernelError;

/// Everything `net` rejects: bad specs, shapes that do not chain, bad inputs, diverged
/// training, malformed model files and I/O failures.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A spec string that does not parse; `caret` repeats the spec with `^` under the token.
    #[error("bad model spec: {reason} at token {index} `{token}`\n  {spec}\n  {caret}")]
    Spec {
        /// The whole spec string.
        spec: String,
        /// The offending token.
        token: String,
        /// Index of the token among the comma-separated tokens (0-based).
        index: usize,
        /// Byte offset of the token in `spec`.
        offset: usize,
        /// What is wrong with it.
        reason: String,
        /// Spaces then `^` under the token, aligned with `spec`.
        caret: String,
    },
    /// Layers whose shapes do not chain, or parameters whose lengths do not match their shape.
    #[error("layer {layer} ({kind}): {reason}")]
    Shape {
        /// Index of the offending layer (the PyTorch Sequential module index).
        layer: usize,
        /// The layer's kind, e.g. `"linear"`.
        kind: &'static str,
        /// What does not fit.
        reason: String,
    },
    /// An input or label buffer whose length does not fit the batch and the model.
    #[error("{what} has {len} elements, expected {expected}")]
    BadInput {
        /// Which buffer (`"input"`, `"labels"`).
        what: &'static str,
        /// Its length.
        len: usize,
        /// The length the batch and model require.
        expected: usize,
    },
    /// A label outside `0..num_classes`.
    #[error("label {label} at batch position {position} is not below the number of classes {classes}")]
    BadLabel {
        /// The label value.
        label: u32,
        /// Its position in the batch.
        position: usize,
        /// The model's number of classes.
        classes: usize,
    },
    /// A kernel rejected a call (a bug in `net` if shapes were validated).
    #[error("kernel error in layer {layer}: {source}")]
    Kernel {
        /// Index of the layer whose kernel failed.
        layer: usize,
        /// The kernel's error.
        #[source]
        source: KernelError,
    },
    /// A NaN or infinite loss stopped training.
    #[error("training diverged: loss {loss} at epoch {epoch}, batch {batch}, learning rate {lr}")]
    Diverged {
        /// Epoch (1-based).
        epoch: usize,
        /// Batch within the epoch (0-based).
        batch: usize,
        /// Learning rate in force for that batch.
        lr: f32,
        /// The non-finite loss.
        loss: f32,
    },
    /// A training configuration that cannot run (zero batch, negative learning rate, …).
    #[error("bad training configuration: {0}")]
    Config(String),
    /// A model file that is malformed or does not match the model its metadata describes;
    /// `problems` lists every mismatch found.
    #[error("model file {}: {}", path.display(), problems.join("; "))]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// Every problem found, one sentence each.
        problems: Vec<String>,
    },
    /// Reading or writing a file failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
