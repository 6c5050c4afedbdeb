//! A sequential model: layers built from a spec, their shapes, and the forward and
//! backward passes over a batch, with all buffers held in a reusable [`Workspace`].
//!
//! Dimension legend: `B` batch, `[C, H, W]` the per-image shape of a layer's output
//! (dense layers `[n, 1, 1]`), `K` classes. Every buffer is NCHW, row-major.
//!
//! Fusion: in [`Model::forward`] and training, a Linear or Conv2d followed by a ReLU
//! runs as one GEMM with the ReLU in its epilogue (the pre-ReLU output is then not
//! kept), and on the way back a Linear or MaxPool2d below which sits a ReLU applies
//! the ReLU mask itself. [`Model::forward_inspect`] and [`Model::inspect_gradients`]
//! fuse nothing, so every layer's output and gradient is materialised.

use std::time::{Duration, Instant};

use crate::NetError;
use crate::init::{Init, init_layers};
use crate::layers::{Conv2d, Layer, Linear, MaxPool2d, conv2d, flatten, linear, maxpool2d, relu};
use crate::loss::softmax_cross_entropy;
use crate::spec::{LayerSpec, parse_spec_with_input, spec_string};

/// The layers that run in the epilogue of a Linear's or Conv2d's kernel
/// ([`Model::fusion`]).
#[derive(Debug, Clone, Copy)]
struct Fusion {
    /// The ReLU after the layer.
    relu: bool,
    /// The 2 × 2 MaxPool2d after a Conv2d (after its ReLU when `relu`).
    pool: bool,
}

impl Fusion {
    /// The index of the last layer that layer `i`'s kernel runs.
    fn last(self, i: usize) -> usize {
        i + usize::from(self.relu) + usize::from(self.pool)
    }
}

/// The inspector of [`Model::forward_inspect`]: `f(layer_index, output, [C, H, W])`,
/// `output` being `B × C × H × W`.
pub type OutputFn<'a> = dyn FnMut(usize, &[f32], [usize; 3]) + 'a;

/// The inspector of [`Model::inspect_gradients`]:
/// `f(layer_index, output, grad_of_output, [C, H, W])`, both `B × C × H × W`.
pub type GradientFn<'a> = dyn FnMut(usize, &[f32], &[f32], [usize; 3]) + 'a;

/// A sequential model over images of shape `[C, H, W]` with `K` output classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    layers: Vec<Layer>,
    input: [usize; 3],
    shapes: Vec<[usize; 3]>,
}

/// Reusable activation, gradient and index buffers for forward and backward passes.
/// Sized on first use for a model and batch; later calls with the same or smaller
/// batch allocate nothing. One workspace may serve several models (it resizes).
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    /// Output of each layer, `B × C × H × W`.
    acts: Vec<Vec<f32>>,
    /// Gradient of the loss with respect to each layer's output, `B × C × H × W`.
    dacts: Vec<Vec<f32>>,
    /// Per max-pooling layer: the input index of each output's maximum.
    argmax: Vec<Vec<u32>>,
    /// Per layer with parameters: gradients of weight and bias (PyTorch layouts).
    grads: Vec<(Vec<f32>, Vec<f32>)>,
    /// β of every Linear weight gradient in the next backward pass,
    /// `dW ← β·dW + ∇W` (0, the default, overwrites). Set only by
    /// [`crate::Sgd::forward_backward_step`], for the length of one pass.
    pub(crate) linear_grad_beta: f32,
    /// The offset folded into the first layer (see [`Workspace::fold_input_offset`]);
    /// 0 for none.
    input_offset: f32,
    /// The first layer's bias with the input offset folded in, during a forward pass;
    /// `offset · ∇bias` during a backward pass.
    offset_scratch: Vec<f32>,
    /// Per layer, the time of its kernels in the passes run since
    /// [`Workspace::time_layers`] turned timing on; `None` when off.
    timing: Option<Vec<LayerTime>>,
}

/// The time one layer's kernels took, summed over the passes a workspace timed
/// ([`Workspace::time_layers`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerTime {
    /// Forward passes: the layer's kernel, including the layers fused into it (a ReLU
    /// after a Linear or Conv2d, a 2 × 2 pooling after a Conv2d; those show zero).
    pub forward: Duration,
    /// Backward passes: the input gradient (and a ReLU below folded into it), the
    /// weight and bias gradients, and the SGD step fused into a Linear's weight gradient.
    pub backward: Duration,
    /// Of `backward`, a Linear's input gradient (its own GEMM, with the folded ReLU);
    /// the rest is its weight gradient with the fused SGD step, and its bias gradient.
    /// Zero for other layers (a Conv2d's backward is one kernel call) and for a layer
    /// whose input gradient is not needed (the first with parameters).
    pub backward_input: Duration,
    /// Forward passes timed.
    pub forward_passes: u32,
    /// Backward passes timed.
    pub backward_passes: u32,
}

impl Workspace {
    /// Starts timing each layer's kernels in the passes run with this workspace, from
    /// zero (`true`), or stops and forgets the times (`false`). A timed pass reads the
    /// clock twice per layer (tens of nanoseconds) and computes the same bits.
    pub fn time_layers(&mut self, on: bool) {
        self.timing = on.then(Vec::new);
    }

    /// Per layer (by index), the time of its kernels since [`Workspace::time_layers`]
    /// turned timing on; empty when timing is off.
    pub fn layer_times(&self) -> &[LayerTime] {
        self.timing.as_deref().unwrap_or(&[])
    }

    /// Passes run with this workspace take inputs that are the model's true inputs minus
    /// `offset` in every element, and add it back in their first layer, which must be a
    /// Linear fed through Flattens only ([`Model::offset_layer`]): its forward adds
    /// `offset · Σᵢ W[o, i]` to each bias, and its weight gradient `offset · ∇bias[o]`
    /// to each row. The same function of the true inputs up to rounding, and the
    /// background of images normalised to a non-zero mean becomes exact zeros again,
    /// whose multiply-adds the GEMM skips ([`crate::training_input`]). 0 (the
    /// default) folds nothing.
    pub fn fold_input_offset(&mut self, offset: f32) {
        self.input_offset = offset;
    }

    /// The clock now, if this workspace is timing.
    fn clock(&self) -> Option<Instant> {
        self.timing.as_ref().map(|_| Instant::now())
    }

    /// Adds the time since `start` (from [`Workspace::clock`]) to layer `layer`'s forward
    /// or backward time.
    fn add_time(&mut self, layer: usize, forward: bool, start: Option<Instant>) {
        if let (Some(times), Some(start)) = (self.timing.as_mut(), start) {
            if times.len() <= layer {
                times.resize(layer + 1, LayerTime::default());
            }
            let t = &mut times[layer];
            if forward {
                t.forward += start.elapsed();
                t.forward_passes += 1;
            } else {
                t.backward += start.elapsed();
                t.backward_passes += 1;
            }
        }
    }

    /// The gradients of layer `layer`'s weight and bias from the last
    /// [`Model::forward_backward`] or [`Model::inspect_gradients`] (`None` for layers
    /// without parameters or before any backward pass).
    pub fn param_grads(&self, layer: usize) -> Option<(&[f32], &[f32])> {
        self.grads.get(layer).filter(|(w, _)| !w.is_empty()).map(|(w, b)| (w.as_slice(), b.as_slice()))
    }

    /// All parameter gradients, one `(weight, bias)` pair per layer (empty for layers
    /// without parameters).
    pub(crate) fn grads(&self) -> &[(Vec<f32>, Vec<f32>)] {
        &self.grads
    }

    /// Swaps layer `layer`'s weight-gradient buffer with `buf` (with
    /// `linear_grad_beta`, a backward pass then accumulates into `buf`'s contents).
    pub(crate) fn swap_weight_grad(&mut self, layer: usize, buf: &mut Vec<f32>) {
        if self.grads.len() <= layer {
            self.grads.resize_with(layer + 1, Default::default);
        }
        std::mem::swap(&mut self.grads[layer].0, buf);
    }

    /// Sizes the buffers of the fused inference pass ([`Model::forward`]) only: the
    /// output of each kernel that runs (a fused ReLU's or pooling's, not the layer's
    /// below it; nothing for an aliased Flatten) and the window indices of a pooling
    /// that runs as its own layer. The others are left as they are, unread. A fused
    /// pooling's indices are not needed without a backward pass: its buffer is emptied
    /// (keeping its capacity), which tells the convolution to skip them. For LeNet-5 at
    /// batch 1000 this is 7 MB instead of 65 MB per thread, allocated and zeroed by
    /// every fresh workspace (`cargo xtask eval`, a new thread).
    fn prepare_forward(&mut self, model: &Model, batch: usize) {
        let n = model.layers.len();
        self.acts.resize_with(n, Vec::new);
        self.argmax.resize_with(n, Vec::new);
        let len = |i: usize| batch * model.shapes[i].iter().product::<usize>();
        for (i, fused) in model.steps(true) {
            let target = fused.last(i);
            self.acts[target].resize(len(target), 0.0);
            if fused.pool {
                self.argmax[target].clear();
            } else if matches!(model.layers[i], Layer::MaxPool2d(_)) {
                self.argmax[i].resize(len(i), 0);
            }
        }
    }

    fn prepare(&mut self, model: &Model, batch: usize, backward: bool) {
        let n = model.layers.len();
        self.acts.resize_with(n, Vec::new);
        self.argmax.resize_with(n, Vec::new);
        for (i, s) in model.shapes.iter().enumerate() {
            self.acts[i].resize(batch * s[0] * s[1] * s[2], 0.0);
            if matches!(model.layers[i], Layer::MaxPool2d(_)) {
                self.argmax[i].resize(batch * s[0] * s[1] * s[2], 0);
            }
        }
        if backward {
            self.dacts.resize_with(n, Vec::new);
            self.grads.resize_with(n, Default::default);
            for (i, s) in model.shapes.iter().enumerate() {
                self.dacts[i].resize(batch * s[0] * s[1] * s[2], 0.0);
                let (w, b) = model.layers[i].params().map_or((0, 0), |(w, b)| (w.len(), b.len()));
                // Every backward pass overwrites the gradients: no zeroing here.
                self.grads[i].0.resize(w, 0.0);
                self.grads[i].1.resize(b, 0.0);
            }
        }
    }
}

/// The output shape of `layer` for an input of shape `s`, or why it does not fit.
fn output_shape(layer: &Layer, s: [usize; 3]) -> Result<[usize; 3], String> {
    match layer {
        Layer::Linear(l) => {
            if s[1] != 1 || s[2] != 1 {
                return Err(format!("input is {s:?}, a linear layer needs a flat input (add `flatten`)"));
            }
            if s[0] != l.in_features {
                return Err(format!("in_features {} but the input has {} features", l.in_features, s[0]));
            }
            if l.weight.len() != l.in_features * l.out_features || l.bias.len() != l.out_features {
                return Err(format!(
                    "weight has {} elements and bias {}, expected {} × {} and {}",
                    l.weight.len(),
                    l.bias.len(),
                    l.out_features,
                    l.in_features,
                    l.out_features
                ));
            }
            Ok([l.out_features, 1, 1])
        }
        Layer::Conv2d(c) => {
            if s[0] != c.in_channels {
                return Err(format!("in_channels {} but the input has {} channels", c.in_channels, s[0]));
            }
            let k2 = c.kernel * c.kernel;
            if c.weight.len() != c.out_channels * c.in_channels * k2 || c.bias.len() != c.out_channels {
                return Err(format!(
                    "weight has {} elements and bias {}, expected {} × {} × {} × {} and {}",
                    c.weight.len(),
                    c.bias.len(),
                    c.out_channels,
                    c.in_channels,
                    c.kernel,
                    c.kernel,
                    c.out_channels
                ));
            }
            let (oh, ow) = c.out_hw(s[1], s[2]).ok_or_else(|| {
                format!(
                    "kernel {k}×{k} stride {st} padding {p} does not fit the {h}×{w} input",
                    k = c.kernel,
                    st = c.stride,
                    p = c.padding,
                    h = s[1],
                    w = s[2]
                )
            })?;
            if c.out_channels == 0 {
                return Err("no output channels".into());
            }
            Ok([c.out_channels, oh, ow])
        }
        Layer::MaxPool2d(p) => {
            if p.kernel == 0 || s[1] < p.kernel || s[2] < p.kernel {
                return Err(format!("window {k}×{k} does not fit the {}×{} input", s[1], s[2], k = p.kernel));
            }
            Ok([s[0], s[1] / p.kernel, s[2] / p.kernel])
        }
        Layer::Relu => Ok(s),
        Layer::Flatten => Ok([s[0] * s[1] * s[2], 1, 1]),
    }
}

impl Model {
    /// Builds a model from a spec string for images of shape `input` (`[C, H, W]`)
    /// and `num_classes` classes, initialised by `init` from `seed`.
    ///
    /// # Errors
    /// [`NetError::Spec`] for a bad spec, an `mlp:` input size that is not `C·H·W`, or
    /// a last layer that does not output `num_classes` features; [`NetError::Shape`]
    /// when the layers do not chain.
    pub fn from_spec(
        spec: &str,
        input: [usize; 3],
        num_classes: usize,
        init: Init,
        seed: u64,
    ) -> Result<Model, NetError> {
        let (specs, mlp_in) = parse_spec_with_input(spec)?;
        let spec_err = |reason: String| NetError::Spec {
            spec: spec.to_string(),
            token: spec.to_string(),
            index: 0,
            offset: 0,
            reason,
            caret: "^".repeat(spec.chars().count().max(1)),
        };
        let features = input[0] * input[1] * input[2];
        if let Some(n) = mlp_in
            && n != features
        {
            return Err(spec_err(format!(
                "the mlp's input size {n} is not the data's {features} = {} × {} × {}",
                input[0], input[1], input[2]
            )));
        }
        let mut layers = Vec::with_capacity(specs.len());
        let mut shape = input;
        for (i, s) in specs.iter().enumerate() {
            let layer = match *s {
                LayerSpec::Conv2d { out_channels, kernel, stride, padding } => {
                    Layer::Conv2d(Conv2d::zeros(shape[0], out_channels, kernel, stride, padding))
                }
                LayerSpec::Linear { out_features } => {
                    Layer::Linear(Linear::zeros(shape[0] * shape[1] * shape[2], out_features))
                }
                LayerSpec::Relu => Layer::Relu,
                LayerSpec::MaxPool2d { kernel } => Layer::MaxPool2d(MaxPool2d { kernel }),
                LayerSpec::Flatten => Layer::Flatten,
            };
            shape = output_shape(&layer, shape).map_err(|reason| NetError::Shape {
                layer: i,
                kind: layer.kind(),
                reason,
            })?;
            layers.push(layer);
        }
        if shape != [num_classes, 1, 1] {
            return Err(spec_err(format!(
                "the last layer outputs {shape:?}, expected {num_classes} classes as [{num_classes}, 1, 1]"
            )));
        }
        init_layers(&mut layers, init, seed);
        Model::from_layers(layers, input)
    }

    /// A model from layers with their parameters; checks that the shapes chain from
    /// `input` (`[C, H, W]`) and that the last output is a flat `[K, 1, 1]`.
    ///
    /// # Errors
    /// [`NetError::Shape`] naming the first layer that does not fit.
    pub fn from_layers(layers: Vec<Layer>, input: [usize; 3]) -> Result<Model, NetError> {
        let mut shapes = Vec::with_capacity(layers.len());
        let mut shape = input;
        if layers.is_empty() || input.contains(&0) {
            return Err(NetError::Shape {
                layer: 0,
                kind: "model",
                reason: format!("a model needs at least one layer and a non-empty input, got {input:?}"),
            });
        }
        for (i, layer) in layers.iter().enumerate() {
            shape = output_shape(layer, shape).map_err(|reason| NetError::Shape {
                layer: i,
                kind: layer.kind(),
                reason,
            })?;
            shapes.push(shape);
        }
        if shape[1] != 1 || shape[2] != 1 {
            return Err(NetError::Shape {
                layer: layers.len() - 1,
                kind: layers[layers.len() - 1].kind(),
                reason: format!("the model must end in a flat [classes, 1, 1] output, got {shape:?}"),
            });
        }
        Ok(Model { layers, input, shapes })
    }

    /// The layers, in PyTorch Sequential module order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Mutable layers, for changing parameter *values* in place (rewinding, masking).
    /// Changing widths this way is caught by the next pass as [`NetError::Shape`];
    /// build a new model with [`Model::from_layers`] instead.
    pub fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }

    /// Takes the layers out (for surgery followed by [`Model::from_layers`]).
    pub fn into_layers(self) -> Vec<Layer> {
        self.layers
    }

    /// The per-image input shape `[C, H, W]`.
    pub fn input_shape(&self) -> [usize; 3] {
        self.input
    }

    /// Number of classes `K` (features of the last layer).
    pub fn num_classes(&self) -> usize {
        self.shapes.last().map_or(0, |s| s[0])
    }

    /// `[C, H, W]` of layer `layer`'s output (dense layers `[n, 1, 1]`). Panics when
    /// `layer` is out of range, like slice indexing.
    pub fn output_shape(&self, layer: usize) -> [usize; 3] {
        self.shapes[layer]
    }

    /// The canonical general-form spec of the current layers, e.g.
    /// `conv6k5p2,relu,pool2,…,fc10`.
    pub fn spec(&self) -> String {
        spec_string(&self.layers.iter().map(Layer::spec).collect::<Vec<_>>())
    }

    /// Parameters (weights and biases) of layer `layer`.
    pub fn layer_params(&self, layer: usize) -> usize {
        self.layers[layer].param_count()
    }

    /// Multiply-accumulates of layer `layer` for one image (Linear `I·O`, Conv2d
    /// `O·OH·OW·C·K·K`, 0 for the others).
    pub fn layer_macs(&self, layer: usize) -> usize {
        match &self.layers[layer] {
            Layer::Linear(l) => l.macs(),
            Layer::Conv2d(c) => {
                let s = self.shapes[layer];
                s[0] * s[1] * s[2] * c.in_channels * c.kernel * c.kernel
            }
            _ => 0,
        }
    }

    /// Total parameters.
    pub fn param_count(&self) -> usize {
        (0..self.layers.len()).map(|i| self.layer_params(i)).sum()
    }

    /// Total multiply-accumulates per image.
    pub fn macs(&self) -> usize {
        (0..self.layers.len()).map(|i| self.layer_macs(i)).sum()
    }

    fn image_len(&self) -> usize {
        self.input[0] * self.input[1] * self.input[2]
    }

    fn check_input(&self, input: &[f32], batch: usize) -> Result<(), NetError> {
        let expected = batch * self.image_len();
        if input.len() != expected {
            return Err(NetError::BadInput { what: "input", len: input.len(), expected });
        }
        // Parameters may have been edited through `layers_mut`; re-check cheaply.
        let mut shape = self.input;
        for (i, layer) in self.layers.iter().enumerate() {
            shape = output_shape(layer, shape).map_err(|reason| NetError::Shape {
                layer: i,
                kind: layer.kind(),
                reason,
            })?;
            if shape != self.shapes[i] {
                return Err(NetError::Shape {
                    layer: i,
                    kind: layer.kind(),
                    reason: format!("output changed from {:?} to {shape:?}", self.shapes[i]),
                });
            }
        }
        Ok(())
    }

    fn check_labels(&self, labels: &[u32], batch: usize) -> Result<(), NetError> {
        if labels.len() != batch {
            return Err(NetError::BadInput { what: "labels", len: labels.len(), expected: batch });
        }
        let classes = self.num_classes();
        if let Some((position, &label)) = labels.iter().enumerate().find(|&(_, &l)| l as usize >= classes) {
            return Err(NetError::BadLabel { label, position, classes });
        }
        Ok(())
    }

    /// The workspace buffer that holds layer `i`'s input (`None`: the model input).
    /// With `fuse`, a Flatten that is not the last layer is an alias of its input (NCHW
    /// is already the flattened order), so the layer after it reads, and writes its
    /// input gradient into, the buffer below the Flatten: no copy either way.
    fn input_slot(&self, i: usize, fuse: bool) -> Option<usize> {
        (0..i).rev().find(|&j| !(fuse && self.aliased_flatten(j)))
    }

    /// Whether layer `i` is a Flatten that the fused passes skip (any but the last layer,
    /// whose buffer is the model's output).
    fn aliased_flatten(&self, i: usize) -> bool {
        i + 1 < self.layers.len() && matches!(self.layers[i], Layer::Flatten)
    }

    /// Runs the layers over `input`; with `fuse`, a Linear/Conv2d followed by a ReLU
    /// writes the ReLU's output directly (the pre-ReLU buffer is left stale), and a
    /// Flatten before the last layer is skipped (its buffer is left stale).
    fn forward_layers(
        &self,
        input: &[f32],
        batch: usize,
        ws: &mut Workspace,
        fuse: bool,
        mut f: Option<&mut OutputFn>,
    ) -> Result<(), NetError> {
        let offset_layer = self.folded_offset_layer(ws)?;
        for (i, fused) in self.steps(fuse) {
            // Layer i writes into buffer `target` (i, or the last layer fused into it) and
            // reads the buffer `src` below it; `src < i ≤ target`, so one split separates them.
            let target = fused.last(i);
            let src = self.input_slot(i, fuse);
            let start = ws.clock();
            let bias = match (&self.layers[i], offset_layer == Some(i)) {
                (Layer::Linear(l), true) => {
                    ws.offset_scratch.resize(l.out_features, 0.0);
                    linear::offset_bias(l, ws.input_offset, &mut ws.offset_scratch);
                    Some(&ws.offset_scratch[..])
                }
                _ => None,
            };
            let (lo, hi) = ws.acts.split_at_mut(i);
            let inp: &[f32] = src.map_or(input, |j| &lo[j]);
            self.forward_layer(i, &mut hi[target - i], inp, &mut ws.argmax[target], batch, fused, bias)?;
            ws.add_time(i, true, start);
            if let Some(f) = f.as_deref_mut() {
                f(i, &ws.acts[i], self.shapes[i]);
            }
        }
        Ok(())
    }

    /// The layer an input offset folds into ([`Workspace::fold_input_offset`]): the
    /// first layer with parameters, when it is a Linear fed through Flattens only.
    pub fn offset_layer(&self) -> Option<usize> {
        let first = self.layers.iter().position(|l| !matches!(l, Layer::Flatten))?;
        matches!(self.layers[first], Layer::Linear(_)).then_some(first)
    }

    /// The layer `ws`'s input offset folds into, `None` when it has none.
    ///
    /// # Errors
    /// [`NetError::Config`] when it has one and this model has no [`Model::offset_layer`].
    fn folded_offset_layer(&self, ws: &Workspace) -> Result<Option<usize>, NetError> {
        if ws.input_offset == 0.0 {
            return Ok(None);
        }
        match self.offset_layer() {
            Some(i) => Ok(Some(i)),
            None => Err(NetError::Config(format!(
                "an input offset ({}) folds only into a first Linear layer fed through Flattens; this \
                 model's first layer with parameters is not one",
                ws.input_offset
            ))),
        }
    }

    /// The kernels a forward pass runs, in order: `(i, what is fused into layer i)`.
    /// With `fuse`, a Flatten aliased to its input is skipped and the layers fused into
    /// another are not visited; without, every layer is a step of its own.
    fn steps(&self, fuse: bool) -> impl Iterator<Item = (usize, Fusion)> + '_ {
        let mut i = 0;
        std::iter::from_fn(move || {
            while fuse && i < self.layers.len() && self.aliased_flatten(i) {
                i += 1;
            }
            let step = (i < self.layers.len()).then(|| (i, self.fusion(i, fuse)))?;
            i = step.1.last(i) + 1;
            Some(step)
        })
    }

    /// Which layers after layer `i` its kernel runs in its epilogue (only with `fuse`):
    /// a ReLU after a Linear or Conv2d, and a 2 × 2 MaxPool2d after a Conv2d (and its
    /// ReLU). The fused layers' own buffers are left stale; the pooling's argmax goes
    /// to the pooling layer's slot, where the backward pass reads it.
    fn fusion(&self, i: usize, fuse: bool) -> Fusion {
        let relu = fuse
            && matches!(self.layers[i], Layer::Linear(_) | Layer::Conv2d(_))
            && matches!(self.layers.get(i + 1), Some(Layer::Relu));
        let after = i + 1 + usize::from(relu);
        let s = self.shapes[i];
        let pool = fuse
            && matches!(self.layers[i], Layer::Conv2d(_))
            && matches!(self.layers.get(after), Some(Layer::MaxPool2d(MaxPool2d { kernel: 2 })))
            && s[1] >= 2
            && s[2] >= 2;
        Fusion { relu, pool }
    }

    /// Layer `i` alone over `batch` images, with the layers `fused` into it: `inp` its
    /// input, `out` the output of the last of them, `argmax` a pooling's window indices,
    /// `bias` a Linear's bias with an input offset folded in, instead of its own.
    #[allow(clippy::too_many_arguments)]
    fn forward_layer(
        &self,
        i: usize,
        out: &mut [f32],
        inp: &[f32],
        argmax: &mut [u32],
        batch: usize,
        fused: Fusion,
        bias: Option<&[f32]>,
    ) -> Result<(), NetError> {
        let in_shape = if i == 0 { self.input } else { self.shapes[i - 1] };
        let kerr = |source| NetError::Kernel { layer: i, source };
        let hw = (in_shape[1], in_shape[2]);
        match &self.layers[i] {
            Layer::Linear(l) => {
                linear::forward(out, inp, l, bias.unwrap_or(&l.bias), batch, fused.relu).map_err(kerr)?
            }
            Layer::Conv2d(c) => {
                // An empty buffer: inference, which needs no window indices.
                let argmax = (!argmax.is_empty()).then_some(argmax);
                conv2d::forward(out, inp, c, batch, hw, fused.relu, fused.pool, argmax).map_err(kerr)?
            }
            Layer::Relu => relu::forward(out, inp),
            Layer::MaxPool2d(p) => {
                maxpool2d::forward(out, argmax, inp, p.kernel, hw.0, hw.1).map_err(kerr)?
            }
            Layer::Flatten => flatten::forward(out, inp),
        }
        Ok(())
    }

    /// Inference. `input`: `B × C × H × W` normalised f32 (`batch = B`). Returns the
    /// logits, row-major `B × K`, borrowed from `ws`.
    ///
    /// # Errors
    /// [`NetError::BadInput`] when `input.len() ≠ B·C·H·W`; [`NetError::Shape`] when
    /// parameters were edited to the wrong length.
    pub fn forward<'w>(
        &self,
        input: &[f32],
        batch: usize,
        ws: &'w mut Workspace,
    ) -> Result<&'w [f32], NetError> {
        self.check_input(input, batch)?;
        ws.prepare_forward(self, batch);
        self.forward_layers(input, batch, ws, true, None)?;
        Ok(&ws.acts[self.layers.len() - 1])
    }

    /// Inference that calls `f(layer_index, output, [C, H, W])` with every layer's output
    /// (`B × C × H × W`), in order — how `prune` records activation status after each ReLU.
    ///
    /// # Errors
    /// As [`Model::forward`].
    pub fn forward_inspect(
        &self,
        input: &[f32],
        batch: usize,
        ws: &mut Workspace,
        f: &mut OutputFn,
    ) -> Result<(), NetError> {
        self.check_input(input, batch)?;
        ws.prepare(self, batch, false);
        self.forward_layers(input, batch, ws, false, Some(f))
    }

    /// One forward and backward pass of the mean softmax cross-entropy over the batch:
    /// leaves the parameter gradients in `ws` ([`Workspace::param_grads`]) and returns
    /// `(loss, correct)`, the mean loss and the number of rows whose argmax is the label.
    /// Does not change parameters. `labels`: `B` class indices.
    ///
    /// # Errors
    /// [`NetError::BadInput`], [`NetError::BadLabel`], [`NetError::Shape`].
    pub fn forward_backward(
        &self,
        input: &[f32],
        labels: &[u32],
        batch: usize,
        ws: &mut Workspace,
    ) -> Result<(f32, usize), NetError> {
        let (loss, correct) = self.forward_loss(input, labels, batch, ws, true)?;
        self.backward_layers(input, batch, ws, true, None, None)?;
        Ok((loss, correct))
    }

    /// [`Model::forward_backward`] that, when the loss is finite, also takes the SGD step
    /// `W ← W − lr·G` on every Linear layer's weights inside the GEMM that writes their
    /// gradient `G` (the velocity, when `Sgd` has swapped it in), so that G is not read
    /// again. When the loss is not finite, nothing changes the parameters.
    pub(crate) fn forward_backward_descend(
        &mut self,
        input: &[f32],
        labels: &[u32],
        batch: usize,
        ws: &mut Workspace,
        lr: f32,
    ) -> Result<(f32, usize), NetError> {
        let (loss, correct) = self.forward_loss(input, labels, batch, ws, true)?;
        if !loss.is_finite() {
            self.backward_layers(input, batch, ws, true, None, None)?;
            return Ok((loss, correct));
        }
        // The weights leave the layers for the pass (the layers keep their shapes), so
        // that the backward pass can borrow the model and write them.
        let mut taken: Vec<Vec<f32>> = self
            .layers
            .iter_mut()
            .map(|l| match l {
                Layer::Linear(l) => std::mem::take(&mut l.weight),
                _ => Vec::new(),
            })
            .collect();
        let pass = self.backward_layers(input, batch, ws, true, None, Some((lr, &mut taken)));
        for (layer, w) in self.layers.iter_mut().zip(taken) {
            if let Layer::Linear(l) = layer {
                l.weight = w;
            }
        }
        pass?;
        Ok((loss, correct))
    }

    /// One forward + backward pass of the mean softmax cross-entropy; calls
    /// `f(layer_index, output, grad_of_output, [C, H, W])` for every layer, from the last
    /// to the first (Taylor criterion = activation × gradient). Does not change
    /// parameters (their gradients are left in `ws`). Returns the mean loss.
    ///
    /// # Errors
    /// As [`Model::forward_backward`].
    pub fn inspect_gradients(
        &self,
        input: &[f32],
        labels: &[u32],
        batch: usize,
        ws: &mut Workspace,
        f: &mut GradientFn,
    ) -> Result<f32, NetError> {
        let (loss, _) = self.forward_loss(input, labels, batch, ws, false)?;
        self.backward_layers(input, batch, ws, false, Some(f), None)?;
        Ok(loss)
    }

    /// The forward half of a training pass: checks the batch, sizes `ws` for a backward
    /// pass, runs the layers (`fuse` as in [`Model::forward_layers`]) and leaves the
    /// logits' gradient in `ws.dacts[last]`. Returns `(mean loss, correct)`.
    fn forward_loss(
        &self,
        input: &[f32],
        labels: &[u32],
        batch: usize,
        ws: &mut Workspace,
        fuse: bool,
    ) -> Result<(f32, usize), NetError> {
        self.check_input(input, batch)?;
        self.check_labels(labels, batch)?;
        ws.prepare(self, batch, true);
        self.forward_layers(input, batch, ws, fuse, None)?;
        let n = self.layers.len();
        Ok(softmax_cross_entropy(Some(&mut ws.dacts[n - 1]), &ws.acts[n - 1], labels, self.num_classes()))
    }

    /// Backward from `ws.dacts[last]` (the logits' gradient) to every parameter.
    /// With `fuse`, ReLU backward is folded into the layer above it where possible,
    /// Flattens before the last layer are skipped (aliases, as in the forward pass), and
    /// gradients are not propagated below the first layer with parameters.
    ///
    /// With `descend = (lr, weights)`, every Linear layer `i` reads its weights from
    /// `weights[i]` (taken out of the model) and takes its SGD step on them in its
    /// weight-gradient GEMM: `W ← W − lr·(that gradient)`.
    fn backward_layers(
        &self,
        input: &[f32],
        batch: usize,
        ws: &mut Workspace,
        fuse: bool,
        mut f: Option<&mut GradientFn>,
        mut descend: Option<(f32, &mut [Vec<f32>])>,
    ) -> Result<(), NetError> {
        let n = self.layers.len();
        let offset_layer = self.folded_offset_layer(ws)?;
        // Gradients below the first layer with parameters feed nothing (when fusing).
        let lowest =
            if fuse { self.layers.iter().position(|l| l.params().is_some()).unwrap_or(n) } else { 0 };
        let mut i = n;
        while i > 0 {
            i -= 1;
            if fuse && self.aliased_flatten(i) {
                continue;
            }
            if let Some(f) = f.as_deref_mut() {
                f(i, &ws.acts[i], &ws.dacts[i], self.shapes[i]);
            }
            let start = ws.clock();
            // A Linear's input gradient, timed apart when the workspace is timing.
            let mut input_time = start.map(|_| Duration::ZERO);
            let in_shape = if i == 0 { self.input } else { self.shapes[i - 1] };
            let need_dinp = i > lowest;
            let below = self.input_slot(i, fuse);
            // A ReLU just below a Linear or MaxPool2d i (at `relu`) whose backward layer i
            // applies itself, writing the gradient of the ReLU's input (buffer `under`).
            // Fusing is never combined with an inspector, so no ReLU output goes unreported.
            let folds = matches!(self.layers[i], Layer::Linear(_) | Layer::MaxPool2d(_));
            let fold = match below {
                Some(relu) if fuse && folds && need_dinp && matches!(self.layers[relu], Layer::Relu) => {
                    self.input_slot(relu, fuse).map(|under| (relu, under))
                }
                _ => None,
            };
            let kerr = |source| NetError::Kernel { layer: i, source };
            let (dlo, dhi) = ws.dacts.split_at_mut(i);
            let dout = &dhi[0];
            let inp: &[f32] = below.map_or(input, |j| &ws.acts[j]);
            // Where the gradient of layer i's input goes: below the folded ReLU, or the
            // buffer layer i read from (none for the model input).
            let dinp = match (need_dinp, fold, below) {
                (false, _, _) => None,
                (true, Some((_, under)), _) => Some(&mut dlo[under][..]),
                (true, None, Some(j)) => Some(&mut dlo[j][..]),
                (true, None, None) => None,
            };
            match &self.layers[i] {
                Layer::Linear(l) => {
                    let (gw, gb) = &mut ws.grads[i];
                    let mask = fold.map(|(relu, _)| &ws.acts[relu][..]);
                    let beta = ws.linear_grad_beta;
                    let weights = match descend.as_mut() {
                        Some((lr, taken)) => linear::Weights::Descend(&mut taken[i], *lr),
                        None => linear::Weights::Read(&l.weight),
                    };
                    let timed = input_time.as_mut();
                    let offset = (offset_layer == Some(i)).then(|| {
                        ws.offset_scratch.resize(l.out_features, 0.0);
                        (ws.input_offset, &mut ws.offset_scratch[..])
                    });
                    linear::backward(
                        dinp,
                        (gw, beta),
                        gb,
                        dout,
                        inp,
                        (l, weights),
                        batch,
                        mask,
                        offset,
                        timed,
                    )
                    .map_err(kerr)?;
                }
                Layer::Conv2d(c) => {
                    let (gw, gb) = &mut ws.grads[i];
                    conv2d::backward(dinp, gw, gb, dout, inp, c, batch, (in_shape[1], in_shape[2]))
                        .map_err(kerr)?;
                }
                Layer::Relu => {
                    if let Some(dinp) = dinp {
                        relu::backward(dinp, dout, &ws.acts[i]);
                    }
                }
                Layer::MaxPool2d(p) => {
                    if let Some(dinp) = dinp {
                        let hw = (in_shape[1], in_shape[2]);
                        // Folded: the pooled values gate the gradient, being the ReLU
                        // output at each argmax.
                        let gate = fold.map(|_| &ws.acts[i][..]);
                        maxpool2d::backward(dinp, dout, &ws.argmax[i], gate, p.kernel, hw).map_err(kerr)?;
                    }
                }
                Layer::Flatten => {
                    if let Some(dinp) = dinp {
                        flatten::backward(dinp, dout);
                    }
                }
            }
            ws.add_time(i, false, start);
            if let (Some(times), Some(d)) = (ws.timing.as_mut(), input_time) {
                times[i].backward_input += d;
            }
            // The folded ReLU is done: continue below it.
            if let Some((relu, _)) = fold {
                i = relu;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lenet() -> Model {
        Model::from_spec("lenet5", [1, 28, 28], 10, Init::PyTorchDefault, 1).unwrap()
    }

    /// A forward pass with the centring folded in (training) and the model that
    /// evaluation folds it into compute the same bits.
    #[test]
    fn a_folded_input_offset_gives_the_logits_of_the_folded_model() {
        let m = Model::from_spec("mlp:48-40-5", [1, 4, 12], 5, Init::PyTorchDefault, 3).unwrap();
        let norm = mnist_io::Normalize::default();
        let (folded, scaled) = crate::fold_centring(&m, norm).unwrap();
        let (train_norm, offset) = crate::training_input(&m, norm);
        assert_eq!((train_norm, offset), (scaled, -norm.mean / norm.std));
        let x: Vec<f32> =
            (0..5 * 48).map(|i| if i % 4 == 0 { scaled.apply((i * 13 % 256) as u8) } else { 0.0 }).collect();
        let mut ws = Workspace::default();
        let plain = folded.forward(&x, 5, &mut ws).unwrap().to_vec();
        ws.fold_input_offset(offset);
        let with_offset = m.forward(&x, 5, &mut ws).unwrap().to_vec();
        assert_eq!(
            plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            with_offset.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // LeNet-5's first layer is a convolution: nothing is folded.
        assert_eq!(crate::training_input(&lenet(), norm), (norm, 0.0));
    }

    #[test]
    fn timed_passes_report_every_kernel_and_change_no_bit() {
        let m = lenet();
        let batch = 3;
        let input: Vec<f32> = (0..batch * 784).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let labels = [1, 7, 3];
        let grads = |ws: &Workspace| -> Vec<u32> {
            (0..m.layers().len())
                .filter_map(|i| ws.param_grads(i))
                .flat_map(|(w, b)| w.iter().chain(b).map(|x| x.to_bits()).collect::<Vec<_>>())
                .collect()
        };
        let mut plain = Workspace::default();
        m.forward_backward(&input, &labels, batch, &mut plain).unwrap();
        let mut timed = Workspace::default();
        timed.time_layers(true);
        m.forward_backward(&input, &labels, batch, &mut timed).unwrap();
        m.forward_backward(&input, &labels, batch, &mut timed).unwrap();
        assert_eq!(grads(&plain), grads(&timed), "timing changes no bit");
        let times = timed.layer_times();
        for (i, layer) in m.layers().iter().enumerate() {
            if layer.params().is_some() {
                let t = times[i];
                assert_eq!((t.forward_passes, t.backward_passes), (2, 2), "layer {i}");
                assert!(t.forward > Duration::ZERO && t.backward > Duration::ZERO, "layer {i}: {t:?}");
                // A Linear's input gradient is timed apart, inside its backward time.
                if matches!(layer, Layer::Linear(_)) {
                    assert!(
                        t.backward_input > Duration::ZERO && t.backward_input < t.backward,
                        "layer {i}: {t:?}"
                    );
                } else {
                    assert_eq!(t.backward_input, Duration::ZERO, "layer {i}");
                }
            }
        }
        // conv1's ReLU and pooling run inside conv1's kernel: nothing of their own.
        assert_eq!(times[1].forward_passes, 0);
        assert_eq!(times[2].forward_passes, 0);
        timed.time_layers(false);
        assert!(timed.layer_times().is_empty());
    }

    #[test]
    fn lenet5_shapes_params_and_macs() {
        let m = lenet();
        assert_eq!(m.output_shape(0), [6, 28, 28]);
        assert_eq!(m.output_shape(2), [6, 14, 14]);
        assert_eq!(m.output_shape(5), [16, 5, 5]);
        assert_eq!(m.output_shape(6), [400, 1, 1]);
        assert_eq!(m.num_classes(), 10);
        assert_eq!(m.param_count(), 156 + 2416 + 48120 + 10164 + 850);
        assert_eq!(m.layer_macs(0), 6 * 28 * 28 * 25);
        assert_eq!(m.layer_macs(3), 16 * 10 * 10 * 150);
        assert_eq!(m.macs(), 117_600 + 240_000 + 48_000 + 10_080 + 840);
        assert_eq!(m.spec(), crate::spec::LENET5);
    }

    #[test]
    fn spec_mismatches_are_errors() {
        assert!(matches!(
            Model::from_spec("mlp:700-10", [1, 28, 28], 10, Init::PyTorchDefault, 0),
            Err(NetError::Spec { .. })
        ));
        assert!(matches!(
            Model::from_spec("mlp:784-12", [1, 28, 28], 10, Init::PyTorchDefault, 0),
            Err(NetError::Spec { .. })
        ));
        assert!(matches!(
            Model::from_spec("conv4k5,fc10", [1, 28, 28], 10, Init::PyTorchDefault, 0),
            Err(NetError::Shape { layer: 1, .. })
        ));
        assert!(matches!(
            Model::from_spec("conv4k30,flatten,fc10", [1, 28, 28], 10, Init::PyTorchDefault, 0),
            Err(NetError::Shape { layer: 0, .. })
        ));
    }

    #[test]
    fn fused_forward_equals_layer_by_layer_forward() {
        let m = lenet();
        let batch = 3;
        let input: Vec<f32> = (0..batch * 784).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let mut ws = Workspace::default();
        let fused = m.forward(&input, batch, &mut ws).unwrap().to_vec();
        let mut last = Vec::new();
        let mut seen = Vec::new();
        m.forward_inspect(&input, batch, &mut ws, &mut |i, out, shape| {
            assert_eq!(out.len(), batch * shape[0] * shape[1] * shape[2]);
            seen.push(i);
            last = out.to_vec();
        })
        .unwrap();
        assert_eq!(seen, (0..12).collect::<Vec<_>>());
        assert_eq!(fused, last);
        assert!(matches!(m.forward(&input[1..], batch, &mut ws), Err(NetError::BadInput { .. })));
    }

    /// Convolutions fused with their ReLU and 2 × 2 pooling, one without ReLU, an odd
    /// convolution output (the pooling drops a row and a column), and a 3 × 3 pooling
    /// that stays a layer of its own: the fused forward gives the unfused logits bit for
    /// bit, at 1 and 2 threads.
    #[test]
    fn fused_forward_equals_layer_by_layer_bit_for_bit() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (spec, input, batch) in [
            ("lenet5", [1, 28, 28], 9),
            ("conv5k3,pool2,conv4k2p1,relu,pool3,flatten,fc7,relu,fc10", [2, 15, 15], 6),
            ("conv3k3p1,relu,pool2,conv6k3,relu,pool2,flatten,fc10", [1, 17, 17], 5),
        ] {
            let m = Model::from_spec(spec, input, 10, Init::PyTorchDefault, 3).unwrap();
            let image = input.iter().product::<usize>();
            let x: Vec<f32> = (0..batch * image).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
            let mut last = Vec::new();
            m.forward_inspect(&x, batch, &mut Workspace::default(), &mut |_, out, _| last = out.to_vec())
                .unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let one = m.forward(&x, batch, &mut Workspace::default()).unwrap().to_vec();
            let two = pool.install(|| m.forward(&x, batch, &mut Workspace::default()).unwrap().to_vec());
            assert_eq!(bits(&one), bits(&last), "{spec}: fused against unfused");
            assert_eq!(bits(&two), bits(&last), "{spec}: 2 threads against unfused");
            // A workspace that a training pass of a larger batch sized, then an inference
            // of a smaller one (which sizes only what it writes), then this one.
            let mut reused = Workspace::default();
            let big: Vec<f32> = (0..(batch + 3) * image).map(|i| (i % 7) as f32 - 3.0).collect();
            let labels: Vec<u32> = (0..batch as u32 + 3).map(|b| b % 10).collect();
            m.forward_backward(&big, &labels, batch + 3, &mut reused).unwrap();
            m.forward(&x[..image], 1, &mut reused).unwrap();
            let again = m.forward(&x, batch, &mut reused).unwrap().to_vec();
            assert_eq!(bits(&again), bits(&last), "{spec}: reused workspace against unfused");
            m.forward_backward(&big, &labels, batch + 3, &mut reused).unwrap();
        }
    }

    /// The fused passes (ReLU in the GEMM epilogue, a 2 × 2 pooling in a convolution's,
    /// ReLU backward folded into the layer above, Flatten aliased to its input) give the
    /// same bits as the unfused ones, for ReLU after and before pooling, an odd
    /// convolution output under a pooling, Flatten first, in the middle and last.
    #[test]
    fn fused_gradients_equal_unfused_gradients() {
        for (spec, input, classes) in [
            ("conv6k3p1,pool2,relu,conv4k3s1p1,relu,flatten,fc4", [2, 10, 10], 4),
            ("conv4k3,relu,pool2,flatten,fc7,relu,fc3", [1, 10, 10], 3),
            ("conv4k2,relu,pool2,flatten,fc3", [1, 8, 8], 3),
            ("conv3k3p1,relu,pool2,conv4k3,relu,pool2,flatten,fc3", [1, 12, 12], 3),
            ("flatten,fc9,relu,fc6,relu,fc3", [3, 4, 4], 3),
            ("conv5k3,relu,flatten,relu,fc4", [1, 6, 6], 4),
            ("conv3k4,relu,flatten", [1, 4, 4], 3),
        ] {
            let m = Model::from_spec(spec, input, classes, Init::KaimingNormal, 42).unwrap();
            let batch = 3;
            let len = batch * input.iter().product::<usize>();
            let x: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
            let labels: Vec<u32> = (0..batch as u32).map(|b| b % classes as u32).collect();
            let (mut fused, mut plain) = (Workspace::default(), Workspace::default());
            let logits = m.forward(&x, batch, &mut fused).unwrap().to_vec();
            let (loss, _) = m.forward_backward(&x, &labels, batch, &mut fused).unwrap();
            let mut last = Vec::new();
            m.forward_inspect(&x, batch, &mut plain, &mut |_, out, _| last = out.to_vec()).unwrap();
            assert_eq!(logits, last, "{spec}");
            let plain_loss =
                m.inspect_gradients(&x, &labels, batch, &mut plain, &mut |_, _, _, _| {}).unwrap();
            assert_eq!(loss.to_bits(), plain_loss.to_bits(), "{spec}");
            for i in 0..m.layers().len() {
                assert_eq!(fused.param_grads(i), plain.param_grads(i), "{spec}, layer {i}");
            }
        }
    }
}
