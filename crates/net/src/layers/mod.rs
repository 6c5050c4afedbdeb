//! The layers of a model, each a forward/backward pair over `f32` NCHW batches that
//! runs its heavy work on `kernels`.
//!
//! Shapes are per image as `[C, H, W]`; a dense (feature) vector is `[n, 1, 1]`.

pub mod conv2d;
pub mod flatten;
pub mod linear;
pub mod maxpool2d;
pub mod relu;

pub use conv2d::Conv2d;
pub use linear::Linear;
pub use maxpool2d::MaxPool2d;

use crate::spec::LayerSpec;

/// One module of a sequential model; its index in [`crate::Model::layers`] is its
/// PyTorch `nn.Sequential` module index (the prefix of its parameter names).
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// Fully connected layer (`nn.Linear`).
    Linear(Linear),
    /// 2-D convolution (`nn.Conv2d`).
    Conv2d(Conv2d),
    /// `max(x, 0)` (`nn.ReLU`).
    Relu,
    /// Max pooling, stride = kernel (`nn.MaxPool2d(k)`).
    MaxPool2d(MaxPool2d),
    /// `[C, H, W]` → `[C·H·W, 1, 1]` (`nn.Flatten`).
    Flatten,
}

impl Layer {
    /// A short lower-case name of the kind of layer (`"linear"`, `"conv2d"`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Linear(_) => "linear",
            Layer::Conv2d(_) => "conv2d",
            Layer::Relu => "relu",
            Layer::MaxPool2d(_) => "maxpool2d",
            Layer::Flatten => "flatten",
        }
    }

    /// The spec of this layer (widths and geometry, no parameters).
    pub fn spec(&self) -> LayerSpec {
        match self {
            Layer::Linear(l) => LayerSpec::Linear { out_features: l.out_features },
            Layer::Conv2d(c) => LayerSpec::Conv2d {
                out_channels: c.out_channels,
                kernel: c.kernel,
                stride: c.stride,
                padding: c.padding,
            },
            Layer::Relu => LayerSpec::Relu,
            Layer::MaxPool2d(p) => LayerSpec::MaxPool2d { kernel: p.kernel },
            Layer::Flatten => LayerSpec::Flatten,
        }
    }

    /// The weight and bias of a layer with parameters (`None` for ReLU, pooling, flatten).
    pub fn params(&self) -> Option<(&[f32], &[f32])> {
        match self {
            Layer::Linear(l) => Some((&l.weight, &l.bias)),
            Layer::Conv2d(c) => Some((&c.weight, &c.bias)),
            _ => None,
        }
    }

    /// Mutable weight and bias of a layer with parameters.
    pub fn params_mut(&mut self) -> Option<(&mut [f32], &mut [f32])> {
        match self {
            Layer::Linear(l) => Some((&mut l.weight, &mut l.bias)),
            Layer::Conv2d(c) => Some((&mut c.weight, &mut c.bias)),
            _ => None,
        }
    }

    /// The PyTorch shapes of weight and bias (`[out, in]` / `[out, in, kh, kw]`, `[out]`).
    pub fn param_shapes(&self) -> Option<(Vec<usize>, Vec<usize>)> {
        match self {
            Layer::Linear(l) => Some((vec![l.out_features, l.in_features], vec![l.out_features])),
            Layer::Conv2d(c) => {
                Some((vec![c.out_channels, c.in_channels, c.kernel, c.kernel], vec![c.out_channels]))
            }
            _ => None,
        }
    }

    /// Number of parameters (weights and biases).
    pub fn param_count(&self) -> usize {
        self.params().map_or(0, |(w, b)| w.len() + b.len())
    }
}
