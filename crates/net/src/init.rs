//! Seeded parameter initialisation (ChaCha8, so the same seed gives bit-identical
//! weights on every machine).
//!
//! Layers are initialised in module order, weight before bias, from one stream.
//! `fan_in` is `I` for Linear and `C·K·K` for Conv2d; `fan_out` is `O` / `O·K·K`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::layers::Layer;

/// How to draw initial parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    /// PyTorch's default: `kaiming_uniform_(a = √5)` for weights, which is
    /// `U(−1/√fan_in, 1/√fan_in)`, and the same bound for biases.
    #[default]
    PyTorchDefault,
    /// Weights `N(0, 2/(fan_in + fan_out))` (Glorot), biases zero.
    XavierNormal,
    /// Weights `N(0, 2/fan_in)` (He, fan-in mode, ReLU gain), biases zero.
    KaimingNormal,
}

/// A standard normal sample by the Box–Muller transform (rand 0.9 has no normal
/// distribution without `rand_distr`); one uniform pair per sample keeps it simple.
fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite.
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Initialises every layer's parameters from `seed`.
pub fn init_layers(layers: &mut [Layer], init: Init, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for layer in layers {
        let (fan_in, fan_out) = match layer {
            Layer::Linear(l) => (l.in_features, l.out_features),
            Layer::Conv2d(c) => (c.in_channels * c.kernel * c.kernel, c.out_channels * c.kernel * c.kernel),
            _ => continue,
        };
        let Some((w, b)) = layer.params_mut() else { continue };
        match init {
            Init::PyTorchDefault => {
                let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
                for v in w.iter_mut().chain(b.iter_mut()) {
                    *v = rng.random_range(-bound..bound);
                }
            }
            Init::XavierNormal | Init::KaimingNormal => {
                let var = if init == Init::XavierNormal {
                    2.0 / (fan_in + fan_out).max(1) as f32
                } else {
                    2.0 / fan_in.max(1) as f32
                };
                let std = var.sqrt();
                for v in w.iter_mut() {
                    *v = std * standard_normal(&mut rng);
                }
                b.fill(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Linear;

    fn stats(init: Init, seed: u64) -> (Vec<f32>, f64, f64) {
        let mut layers = vec![Layer::Linear(Linear::zeros(400, 300))];
        init_layers(&mut layers, init, seed);
        let Layer::Linear(l) = &layers[0] else { unreachable!() };
        let n = l.weight.len() as f64;
        let mean = l.weight.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = l.weight.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        (l.weight.iter().chain(&l.bias).copied().collect(), mean, var)
    }

    #[test]
    fn same_seed_same_bits_and_the_right_spread() {
        let (a, _, var) = stats(Init::PyTorchDefault, 7);
        let (b, _, _) = stats(Init::PyTorchDefault, 7);
        let (c, _, _) = stats(Init::PyTorchDefault, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let bound = 1.0 / 20.0;
        assert!(a.iter().all(|v| v.abs() <= bound));
        // U(±b) has variance b²/3.
        assert!((var / (bound * bound / 3.0) as f64 - 1.0).abs() < 0.05, "{var}");
        let (_, mean, var) = stats(Init::KaimingNormal, 1);
        assert!(mean.abs() < 0.002 && (var / (2.0 / 400.0) - 1.0).abs() < 0.05, "{mean} {var}");
        let (_, _, var) = stats(Init::XavierNormal, 1);
        assert!((var / (2.0 / 700.0) - 1.0).abs() < 0.05, "{var}");
    }
}
