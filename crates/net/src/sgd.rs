//! Stochastic gradient descent with PyTorch's semantics (`torch.optim.SGD`, dampening 0):
//!
//! ```text
//! g ← g + wd·w                       (weight decay)
//! v ← g              on the first step,
//! v ← μ·v + g        afterwards      (momentum, a pure step: `momentum_step`)
//! d ← g + μ·v if Nesterov, else v
//! w ← w − lr·d
//! ```
//!
//! and the learning-rate schedules that set `lr` per epoch.

use crate::{Layer, Model, NetError, Workspace};

/// The learning rate over epochs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Schedule {
    /// `lr` throughout.
    #[default]
    Constant,
    /// `lr · gamma^⌊epoch / every⌋` (PyTorch `StepLR(step_size = every, gamma)`).
    Step {
        /// Epochs between decays (≥ 1).
        every: usize,
        /// Factor applied at each decay.
        gamma: f32,
    },
    /// `lr · (1 + cos(π · epoch / epochs)) / 2` (PyTorch `CosineAnnealingLR(T_max = epochs)`,
    /// `eta_min = 0`), stepped once per epoch.
    Cosine,
}

impl Schedule {
    /// The learning rate for `epoch` (0-based) of `epochs`, from the base rate `lr`.
    pub fn lr(&self, lr: f32, epoch: usize, epochs: usize) -> f32 {
        match *self {
            Schedule::Constant => lr,
            Schedule::Step { every, gamma } => lr * gamma.powi((epoch / every.max(1)) as i32),
            Schedule::Cosine => {
                let t = epoch as f64 / epochs.max(1) as f64;
                (f64::from(lr) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0) as f32
            }
        }
    }
}

/// One momentum step for one parameter, pure: from the gradient `g` (weight decay
/// included) and the velocity `v` (ignored on the first step), returns
/// `(direction, new velocity)`.
#[inline(always)]
pub fn momentum_step(g: f32, v: f32, momentum: f32, nesterov: bool, first: bool) -> (f32, f32) {
    let v = if first { g } else { momentum * v + g };
    let d = if nesterov { g + momentum * v } else { v };
    (d, v)
}

/// SGD with momentum state for one model. The state is sized from the model on the
/// first step; it must be reset (`Sgd::new`) if the model's widths change.
#[derive(Debug, Clone)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum `μ` (0 disables it).
    pub momentum: f32,
    /// L2 weight decay `wd`, added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Velocities per layer: (weight, bias), PyTorch layouts.
    velocity: Vec<(Vec<f32>, Vec<f32>)>,
    steps: u64,
}

impl Sgd {
    /// An optimiser with no state yet.
    pub fn new(lr: f32, momentum: f32, weight_decay: f32, nesterov: bool) -> Self {
        Sgd { lr, momentum, weight_decay, nesterov, velocity: Vec::new(), steps: 0 }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Updates every parameter of `model` from the gradients the last
    /// [`Model::forward_backward`] left in `ws`.
    ///
    /// # Errors
    /// [`NetError::Shape`] when the gradients in `ws` do not belong to this model.
    pub fn step(&mut self, model: &mut Model, ws: &Workspace) -> Result<(), NetError> {
        let grads = ws.grads();
        let layers = model.layers_mut();
        if grads.len() != layers.len() {
            return Err(NetError::Shape {
                layer: 0,
                kind: "sgd",
                reason: format!(
                    "workspace holds gradients of {} layers, model has {}",
                    grads.len(),
                    layers.len()
                ),
            });
        }
        let first = self.prepare_velocity(layers);
        self.apply(layers, grads, first, false)
    }

    /// The update of every parameter from `grads`, except, when `linear_done`, the Linear
    /// weights, whose velocities and values a fused pass has already advanced (their
    /// entries in `grads` are then not read); counts the step.
    fn apply(
        &mut self,
        layers: &mut [Layer],
        grads: &[(Vec<f32>, Vec<f32>)],
        first: bool,
        linear_done: bool,
    ) -> Result<(), NetError> {
        let (lr, mu, wd, nesterov) = (self.lr, self.momentum, self.weight_decay, self.nesterov);
        for (i, ((layer, (gw, gb)), (vw, vb))) in
            layers.iter_mut().zip(grads).zip(self.velocity.iter_mut()).enumerate()
        {
            let advanced = linear_done && matches!(layer, Layer::Linear(_));
            let kind = layer.kind();
            let Some((w, b)) = layer.params_mut() else { continue };
            if (!advanced && gw.len() != w.len())
                || vw.len() != w.len()
                || gb.len() != b.len()
                || vb.len() != b.len()
            {
                return Err(NetError::Shape {
                    layer: i,
                    kind,
                    reason: "gradient or velocity length differs from the parameters".into(),
                });
            }
            if !advanced {
                update(w, gw, vw, lr, mu, wd, nesterov, first);
            }
            update(b, gb, vb, lr, mu, wd, nesterov, first);
        }
        self.steps += 1;
        Ok(())
    }

    /// Sizes the velocities for `layers` when this is the first step (or the model has
    /// changed its number of layers) and says whether it is.
    fn prepare_velocity(&mut self, layers: &[Layer]) -> bool {
        let first = self.steps == 0 || self.velocity.len() != layers.len();
        if first {
            self.velocity = layers
                .iter()
                .map(|l| {
                    l.params()
                        .map_or((Vec::new(), Vec::new()), |(w, b)| (vec![0.0; w.len()], vec![0.0; b.len()]))
                })
                .collect();
        }
        first
    }

    /// One training step on a batch: [`Model::forward_backward`], then [`Sgd::step`],
    /// with the same result at less memory traffic. Returns `(loss, correct)`. When the
    /// loss is not finite the parameters are left as they were (the velocities are
    /// not), for the caller to stop.
    ///
    /// With momentum, no Nesterov and no weight decay, each Linear layer's
    /// weight-gradient GEMM accumulates into the velocity itself (its β = μ gives
    /// `v ← μ·v + ∇W`, the update's own two operations in the same order) and, as it
    /// writes each element of v, takes the step `w ← w − lr·v` (`gemm_with_descend`):
    /// the weights' update reads v and w and writes both once, inside the GEMM, instead
    /// of reading g, v, w and writing v, w in a pass of its own, and the gradient is
    /// never stored. The result is
    /// bit-identical to the two calls while the batch fits one k-block of the GEMM (512
    /// rows); beyond that the GEMM adds μ·v to the first block's sum rather than to the
    /// whole sum, a difference in the last bits. Other settings, and the other layers'
    /// parameters, take the two-call path; the gradients of fused weights are not left
    /// in `ws`.
    ///
    /// # Errors
    /// As [`Model::forward_backward`] and [`Sgd::step`].
    pub fn forward_backward_step(
        &mut self,
        model: &mut Model,
        input: &[f32],
        labels: &[u32],
        batch: usize,
        ws: &mut Workspace,
    ) -> Result<(f32, usize), NetError> {
        if self.momentum == 0.0 || self.nesterov || self.weight_decay != 0.0 {
            let (loss, correct) = model.forward_backward(input, labels, batch, ws)?;
            if loss.is_finite() {
                self.step(model, ws)?;
            }
            return Ok((loss, correct));
        }
        let first = self.prepare_velocity(model.layers());
        let mut fused = Vec::new();
        for (i, layer) in model.layers().iter().enumerate() {
            if let Layer::Linear(l) = layer {
                if self.velocity[i].0.len() != l.weight.len() {
                    return Err(NetError::Shape {
                        layer: i,
                        kind: layer.kind(),
                        reason: "velocity length differs from the parameters".into(),
                    });
                }
                fused.push(i);
            }
        }
        for &i in &fused {
            ws.swap_weight_grad(i, &mut self.velocity[i].0);
        }
        ws.linear_grad_beta = if first { 0.0 } else { self.momentum };
        let pass = model.forward_backward_descend(input, labels, batch, ws, self.lr);
        // The velocities come back whatever the pass returned.
        ws.linear_grad_beta = 0.0;
        for &i in &fused {
            ws.swap_weight_grad(i, &mut self.velocity[i].0);
        }
        let (loss, correct) = pass?;
        if !loss.is_finite() {
            return Ok((loss, correct));
        }
        self.apply(model.layers_mut(), ws.grads(), first, true)?;
        Ok((loss, correct))
    }
}

/// Elements per parallel task of the update: large enough that a task's overhead is
/// negligible, small enough that both threads get work on the larger layers.
const CHUNK: usize = 1 << 14;

/// `w ← w − lr·d` with `d` from [`momentum_step`], over one tensor, in parallel chunks
/// (every element is independent, so the result does not depend on the thread count).
/// The branches are hoisted out of the loops so that each loop vectorises.
#[allow(clippy::too_many_arguments)]
fn update(w: &mut [f32], g: &[f32], v: &mut [f32], lr: f32, mu: f32, wd: f32, nesterov: bool, first: bool) {
    let body = |(w, (g, v)): (&mut [f32], (&[f32], &mut [f32]))| {
        if mu == 0.0 {
            for (w, &g) in w.iter_mut().zip(g) {
                let g = if wd != 0.0 { g + wd * *w } else { g };
                *w -= lr * g;
            }
        } else if !nesterov && !first && wd == 0.0 {
            // The common case: v ← μ·v + g, w ← w − lr·v.
            for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                *v = mu * *v + g;
                *w -= lr * *v;
            }
        } else {
            for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                let g = if wd != 0.0 { g + wd * *w } else { g };
                let (d, nv) = momentum_step(g, *v, mu, nesterov, first);
                *v = nv;
                *w -= lr * d;
            }
        }
    };
    if w.len() <= CHUNK {
        body((w, (g, v)));
    } else {
        let chunks = w.chunks_mut(CHUNK).zip(g.chunks(CHUNK).zip(v.chunks_mut(CHUNK))).collect();
        kernels::team::for_each(chunks, |_, c| body(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Init;

    fn batch(len: usize, batch: usize, classes: u32) -> (Vec<f32>, Vec<u32>) {
        let x = (0..batch * len).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let labels = (0..batch as u32).map(|b| b * 7 % classes).collect();
        (x, labels)
    }

    fn param_bits(m: &Model) -> Vec<Vec<u32>> {
        m.layers()
            .iter()
            .filter_map(|l| l.params())
            .flat_map(|(w, b)| {
                [w.iter().map(|v| v.to_bits()).collect(), b.iter().map(|v| v.to_bits()).collect()]
            })
            .collect()
    }

    #[test]
    fn fused_step_is_bit_identical_to_forward_backward_then_step() {
        let cases =
            [("mlp:48-40-24-5", [1, 4, 12]), ("conv4k3p1,relu,pool2,flatten,fc12,relu,fc5", [1, 8, 8])];
        for (spec, shape) in cases {
            let (x, labels) = batch(shape.iter().product(), 9, 5);
            let two_calls = {
                let mut m = Model::from_spec(spec, shape, 5, Init::PyTorchDefault, 3).unwrap();
                let (mut sgd, mut ws) = (Sgd::new(0.05, 0.9, 0.0, false), Workspace::default());
                let mut losses = Vec::new();
                for _ in 0..3 {
                    losses.push(m.forward_backward(&x, &labels, 9, &mut ws).unwrap());
                    sgd.step(&mut m, &ws).unwrap();
                }
                (losses, param_bits(&m))
            };
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let fused = pool.install(|| {
                    let mut m = Model::from_spec(spec, shape, 5, Init::PyTorchDefault, 3).unwrap();
                    let (mut sgd, mut ws) = (Sgd::new(0.05, 0.9, 0.0, false), Workspace::default());
                    let losses: Vec<_> = (0..3)
                        .map(|_| sgd.forward_backward_step(&mut m, &x, &labels, 9, &mut ws).unwrap())
                        .collect();
                    (losses, param_bits(&m))
                });
                assert_eq!(fused, two_calls, "{spec}, {threads} threads");
            }
        }
    }

    /// Three steps on inputs with a zero background fed with their offset folded into
    /// the first layer, against the same inputs centred: the same training up to
    /// rounding, on the fused-descent path and on the two-call paths.
    #[test]
    fn a_folded_input_offset_trains_as_the_centred_inputs_do() {
        let (spec, shape, n) = ("mlp:48-40-24-5", [1, 4, 12], 9);
        let offset = -0.1307f32 / 0.3081;
        let scaled: Vec<f32> =
            (0..n * 48).map(|i| if i % 3 == 0 { (i % 17) as f32 / 5.0 } else { 0.0 }).collect();
        let centred: Vec<f32> = scaled.iter().map(|&s| s + offset).collect();
        let (_, labels) = batch(48, n, 5);
        for (momentum, decay) in [(0.9, 0.0), (0.0, 0.0), (0.9, 1e-3)] {
            let run = |x: &[f32], offset: f32| {
                let mut m = Model::from_spec(spec, shape, 5, Init::PyTorchDefault, 3).unwrap();
                let (mut sgd, mut ws) = (Sgd::new(0.05, momentum, decay, false), Workspace::default());
                ws.fold_input_offset(offset);
                let losses: Vec<f32> = (0..3)
                    .map(|_| sgd.forward_backward_step(&mut m, x, &labels, n, &mut ws).unwrap().0)
                    .collect();
                let params: Vec<f32> = m
                    .layers()
                    .iter()
                    .filter_map(|l| l.params())
                    .flat_map(|(w, b)| [w, b])
                    .flatten()
                    .copied()
                    .collect();
                (losses, params)
            };
            let close = |a: &[f32], b: &[f32]| {
                a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-5 * a.abs().max(0.01))
            };
            let (losses, params) = run(&centred, 0.0);
            let (folded_losses, folded_params) = run(&scaled, offset);
            assert!(close(&losses, &folded_losses), "μ {momentum}: {losses:?} vs {folded_losses:?}");
            assert!(close(&params, &folded_params), "μ {momentum}, weight decay {decay}: parameters differ");
            // The offset is what makes them agree.
            assert!(!close(&params, &run(&scaled, 0.0).1));
        }
    }

    #[test]
    fn an_input_offset_needs_a_first_linear_layer() {
        let spec = "conv4k3p1,relu,pool2,flatten,fc12,relu,fc5";
        let mut m = Model::from_spec(spec, [1, 8, 8], 5, Init::PyTorchDefault, 3).unwrap();
        assert_eq!(m.offset_layer(), None);
        let (x, labels) = batch(64, 2, 5);
        let (mut sgd, mut ws) = (Sgd::new(0.05, 0.9, 0.0, false), Workspace::default());
        ws.fold_input_offset(-0.5);
        let err = sgd.forward_backward_step(&mut m, &x, &labels, 2, &mut ws).unwrap_err();
        assert!(matches!(err, NetError::Config(ref msg) if msg.contains("first Linear")), "{err}");
        let flat = Model::from_spec("flatten,fc12,relu,fc5", [1, 8, 8], 5, Init::PyTorchDefault, 3).unwrap();
        assert_eq!(flat.offset_layer(), Some(1));
    }

    #[test]
    fn fused_step_leaves_the_parameters_alone_on_a_non_finite_loss() {
        let (mut x, labels) = batch(48, 4, 5);
        // No ReLU, which would map the NaN to 0.
        let mut m = Model::from_spec("mlp:48-5", [1, 1, 48], 5, Init::PyTorchDefault, 1).unwrap();
        let (mut sgd, mut ws) = (Sgd::new(0.1, 0.9, 0.0, false), Workspace::default());
        sgd.forward_backward_step(&mut m, &x, &labels, 4, &mut ws).unwrap();
        let before = param_bits(&m);
        x[5] = f32::NAN;
        let (loss, _) = sgd.forward_backward_step(&mut m, &x, &labels, 4, &mut ws).unwrap();
        assert!(loss.is_nan());
        assert_eq!(param_bits(&m), before);
    }

    #[test]
    fn momentum_matches_pytorch_by_hand() {
        // First step v = g; then v = μv + g.
        assert_eq!(momentum_step(2.0, 123.0, 0.9, false, true), (2.0, 2.0));
        assert_eq!(momentum_step(1.0, 2.0, 0.5, false, false), (2.0, 2.0));
        // Nesterov: d = g + μ·v.
        assert_eq!(momentum_step(1.0, 2.0, 0.5, true, false), (2.0, 2.0));
        assert_eq!(momentum_step(2.0, 0.0, 0.5, true, true), (3.0, 2.0));
    }

    #[test]
    fn schedules() {
        assert_eq!(Schedule::Constant.lr(0.1, 7, 10), 0.1);
        let s = Schedule::Step { every: 3, gamma: 0.5 };
        assert_eq!(s.lr(0.8, 2, 10), 0.8);
        assert_eq!(s.lr(0.8, 3, 10), 0.4);
        assert_eq!(s.lr(0.8, 6, 10), 0.2);
        assert_eq!(Schedule::Cosine.lr(0.2, 0, 10), 0.2);
        assert!((Schedule::Cosine.lr(0.2, 5, 10) - 0.1).abs() < 1e-7);
    }
}
