//! Structured surgery: physically remove neurons (dense units or conv channels).
//!
//! A *prunable layer* is a ReLU whose output feeds another layer with parameters. Its
//! *producer* is the Linear/Conv2d that computes it, its *consumer* the next
//! Linear/Conv2d, reached through any MaxPool2d and Flatten in between. Removing
//! neuron `j` deletes the producer's row/filter `j` and bias `j`, and the consumer's
//! input column `j` (Linear after a dense layer), its block of `H·W` input columns
//! (Linear after Flatten: NCHW flattens channel-major, so channel `j` is columns
//! `j·H·W .. (j+1)·H·W`), or its input channel `j` (Conv2d). MaxPool2d and ReLU act
//! per channel, so they need no change. The result is an ordinary smaller
//! [`net::Model`], saved in the same file format.
//!
//! Exactness: a neuron that is off for every input contributes `0 · w` to the
//! consumer's sums, so removing it leaves every output bit-identical as long as the
//! consumer's GEMM depth fits one k-block of `kernels` (≤ 512: then each output is
//! one sum in a fixed order); deeper products are split into blocks at positions
//! that move when columns go, which may change the last bit of a sum.

use net::{Layer, Model};

use crate::PruneError;

/// One prunable layer of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prunable {
    /// Index of the ReLU in the model's layers (where activation status is recorded).
    pub relu: usize,
    /// Index of the Linear/Conv2d computing the neurons.
    pub producer: usize,
    /// Index of the next Linear/Conv2d, which reads the neurons.
    pub consumer: usize,
    /// Neurons: output features (dense) or channels (conv).
    pub neurons: usize,
    /// Spatial positions per neuron at the ReLU (H·W, 1 for dense).
    pub positions: usize,
    /// Whether the producer is a convolution (its neurons are channels).
    pub conv: bool,
}

/// The prunable layers of `model`, in model order.
///
/// # Errors
/// [`PruneError::Unsupported`] when a ReLU is not preceded by a Linear/Conv2d, or a
/// layer that is neither pooling nor flatten sits between a ReLU and its consumer.
pub fn prunable_layers(model: &Model) -> Result<Vec<Prunable>, PruneError> {
    let layers = model.layers();
    let mut out = Vec::new();
    for (r, layer) in layers.iter().enumerate() {
        if !matches!(layer, Layer::Relu) {
            continue;
        }
        let producer = match r.checked_sub(1).map(|p| &layers[p]) {
            Some(Layer::Linear(_) | Layer::Conv2d(_)) => r - 1,
            _ => {
                return Err(PruneError::Unsupported {
                    layer: r,
                    what: "a ReLU must directly follow a Linear or Conv2d layer".into(),
                });
            }
        };
        let mut consumer = None;
        for (c, l) in layers.iter().enumerate().skip(r + 1) {
            match l {
                Layer::Linear(_) | Layer::Conv2d(_) => {
                    consumer = Some(c);
                    break;
                }
                Layer::MaxPool2d(_) | Layer::Flatten => {}
                Layer::Relu => {
                    return Err(PruneError::Unsupported { layer: c, what: "two ReLUs in a row".into() });
                }
            }
        }
        // A ReLU after the last layer with parameters feeds nothing to cut: not prunable.
        let Some(consumer) = consumer else { continue };
        let shape = model.output_shape(r);
        out.push(Prunable {
            relu: r,
            producer,
            consumer,
            neurons: shape[0],
            positions: shape[1] * shape[2],
            conv: matches!(layers[producer], Layer::Conv2d(_)),
        });
    }
    Ok(out)
}

/// The widths (neurons) of the prunable layers.
pub fn widths(model: &Model) -> Result<Vec<usize>, PruneError> {
    Ok(prunable_layers(model)?.iter().map(|p| p.neurons).collect())
}

/// Removes the neurons whose `keep` entry is `false`: `keep[l][j]` for neuron `j` of
/// prunable layer `l` (see [`prunable_layers`]). Returns a new, smaller model.
///
/// # Errors
/// [`PruneError::Shape`] when `keep` does not match the layers or widths;
/// [`PruneError::EmptyLayer`] when a layer would lose all its neurons.
pub fn remove_neurons(model: &Model, keep: &[Vec<bool>]) -> Result<Model, PruneError> {
    let prunable = prunable_layers(model)?;
    if keep.len() != prunable.len() {
        return Err(PruneError::Shape {
            context: "remove_neurons: one keep mask per prunable layer",
            expected: prunable.len(),
            got: keep.len(),
        });
    }
    let mut layers = model.layers().to_vec();
    for (l, (p, mask)) in prunable.iter().zip(keep).enumerate() {
        if mask.len() != p.neurons {
            return Err(PruneError::Shape {
                context: "remove_neurons: keep mask length = layer width",
                expected: p.neurons,
                got: mask.len(),
            });
        }
        let kept: Vec<usize> = (0..p.neurons).filter(|&j| mask[j]).collect();
        if kept.is_empty() {
            return Err(PruneError::EmptyLayer { layer: l, model_layer: p.producer, neurons: p.neurons });
        }
        if kept.len() == p.neurons {
            continue;
        }
        cut_outputs(&mut layers[p.producer], &kept);
        cut_inputs(&mut layers[p.consumer], &kept, p.neurons);
    }
    Ok(Model::from_layers(layers, model.input_shape())?)
}

/// Keeps only output rows/filters `kept` (ascending) of a Linear/Conv2d, and their biases.
fn cut_outputs(layer: &mut Layer, kept: &[usize]) {
    let (weight, bias, row, out) = match layer {
        Layer::Linear(l) => (&mut l.weight, &mut l.bias, l.in_features, &mut l.out_features),
        Layer::Conv2d(c) => {
            (&mut c.weight, &mut c.bias, c.in_channels * c.kernel * c.kernel, &mut c.out_channels)
        }
        _ => unreachable!("prunable_layers only names Linear/Conv2d producers"),
    };
    *weight = kept.iter().flat_map(|&j| weight[j * row..(j + 1) * row].iter().copied()).collect();
    *bias = kept.iter().map(|&j| bias[j]).collect();
    *out = kept.len();
}

/// Keeps only the inputs of a Linear/Conv2d that come from channels `kept` (ascending)
/// of a `channels`-wide layer.
fn cut_inputs(layer: &mut Layer, kept: &[usize], channels: usize) {
    match layer {
        Layer::Linear(l) => {
            // After Flatten each channel is a block of H·W consecutive inputs.
            let block = l.in_features / channels;
            let new_in = kept.len() * block;
            let mut w = Vec::with_capacity(l.out_features * new_in);
            for row in l.weight.chunks_exact(l.in_features) {
                for &j in kept {
                    w.extend_from_slice(&row[j * block..(j + 1) * block]);
                }
            }
            l.weight = w;
            l.in_features = new_in;
        }
        Layer::Conv2d(c) => {
            let k2 = c.kernel * c.kernel;
            let mut w = Vec::with_capacity(c.out_channels * kept.len() * k2);
            for filter in c.weight.chunks_exact(c.in_channels * k2) {
                for &j in kept {
                    w.extend_from_slice(&filter[j * k2..(j + 1) * k2]);
                }
            }
            c.weight = w;
            c.in_channels = kept.len();
        }
        _ => unreachable!("prunable_layers only names Linear/Conv2d consumers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::{Init, Workspace};

    fn input(n: usize, len: usize) -> Vec<f32> {
        (0..n * len).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect()
    }

    /// Every layer's output for `x`.
    fn outputs(m: &Model, x: &[f32], batch: usize) -> Vec<Vec<f32>> {
        let mut ws = Workspace::default();
        let mut out = Vec::new();
        m.forward_inspect(x, batch, &mut ws, &mut |_, o, _| out.push(o.to_vec())).unwrap();
        out
    }

    /// Makes neuron `j` of prunable layer `p` dead: zero weights, bias −100.
    fn kill(m: &mut Model, p: &Prunable, j: usize) {
        match &mut m.layers_mut()[p.producer] {
            Layer::Linear(l) => {
                let n = l.in_features;
                l.weight[j * n..(j + 1) * n].fill(0.0);
                l.bias[j] = -100.0;
            }
            Layer::Conv2d(c) => {
                let n = c.in_channels * c.kernel * c.kernel;
                c.weight[j * n..(j + 1) * n].fill(0.0);
                c.bias[j] = -100.0;
            }
            _ => unreachable!(),
        }
    }

    /// Selects kept channels `kept` of an NCHW batch.
    fn select(o: &[f32], batch: usize, channels: usize, kept: &[usize]) -> Vec<f32> {
        let per = o.len() / batch / channels;
        let mut v = Vec::new();
        for b in 0..batch {
            for &j in kept {
                let s = (b * channels + j) * per;
                v.extend_from_slice(&o[s..s + per]);
            }
        }
        v
    }

    fn check_dead_removal(spec: &str, input_shape: [usize; 3], dead: &[(usize, usize)]) {
        let mut m = Model::from_spec(spec, input_shape, 3, Init::PyTorchDefault, 7).unwrap();
        let pl = prunable_layers(&m).unwrap();
        for &(l, j) in dead {
            kill(&mut m, &pl[l], j);
        }
        let keep: Vec<Vec<bool>> = pl
            .iter()
            .enumerate()
            .map(|(l, p)| (0..p.neurons).map(|j| !dead.contains(&(l, j))).collect())
            .collect();
        let small = remove_neurons(&m, &keep).unwrap();
        let batch = 5;
        let x = input(batch, input_shape.iter().product());
        let (big_out, small_out) = (outputs(&m, &x, batch), outputs(&small, &x, batch));
        // Logits bit-identical.
        assert_eq!(big_out.last(), small_out.last(), "{spec}");
        // Every layer: the kept neurons' outputs are exactly the original's.
        let mut at = vec![None; m.layers().len()];
        for (l, p) in pl.iter().enumerate() {
            at[p.producer..p.consumer].fill(Some(l));
        }
        for i in 0..m.layers().len() {
            let expected = match (at[i], m.output_shape(i)) {
                (Some(l), s) if s[1] * s[2] > 1 || !matches!(m.layers()[i], Layer::Flatten) => {
                    let kept: Vec<usize> = (0..pl[l].neurons).filter(|&j| keep[l][j]).collect();
                    select(&big_out[i], batch, s[0], &kept)
                }
                (Some(l), s) => {
                    // A flattened conv layer: blocks of H·W per channel.
                    let block = s[0] / pl[l].neurons;
                    let kept: Vec<usize> = (0..pl[l].neurons).filter(|&j| keep[l][j]).collect();
                    let mut v = Vec::new();
                    for b in 0..batch {
                        for &j in &kept {
                            let st = b * s[0] + j * block;
                            v.extend_from_slice(&big_out[i][st..st + block]);
                        }
                    }
                    v
                }
                (None, _) => big_out[i].clone(),
            };
            assert_eq!(expected, small_out[i], "{spec}: layer {i}");
        }
        assert!(small.param_count() < m.param_count());
    }

    #[test]
    fn dead_dense_units_leave_outputs_bit_identical() {
        check_dead_removal("flatten,fc12,relu,fc9,relu,fc3", [1, 4, 4], &[(0, 0), (0, 5), (0, 11), (1, 3)]);
    }

    #[test]
    fn dead_conv_channels_across_pool_and_flatten_leave_outputs_bit_identical() {
        check_dead_removal(
            "conv6k3p1,relu,pool2,conv5k3,relu,flatten,fc7,relu,fc3",
            [2, 8, 8],
            &[(0, 1), (0, 4), (1, 0), (1, 2), (2, 6)],
        );
    }

    #[test]
    fn kept_neurons_of_live_layers_are_exact_and_shapes_shrink() {
        // Removing live neurons changes what follows, but each pruned producer's kept
        // outputs are exactly the original's (same weights, same inputs).
        let m =
            Model::from_spec("conv4k3,relu,pool2,flatten,fc6,relu,fc3", [1, 8, 8], 3, Init::KaimingNormal, 3)
                .unwrap();
        let keep = vec![vec![true, false, true, false], vec![false, true, true, true, false, true]];
        let small = remove_neurons(&m, &keep).unwrap();
        assert_eq!(widths(&small).unwrap(), vec![2, 4]);
        assert_eq!(small.spec(), "conv2k3,relu,pool2,flatten,fc4,relu,fc3");
        let x = input(3, 64);
        let (a, b) = (outputs(&m, &x, 3), outputs(&small, &x, 3));
        for i in 0..3 {
            assert_eq!(select(&a[i], 3, 4, &[0, 2]), b[i], "conv block layer {i}");
        }
    }

    #[test]
    fn never_removes_a_whole_layer_and_checks_masks() {
        let m = Model::from_spec("flatten,fc4,relu,fc3", [1, 2, 2], 3, Init::PyTorchDefault, 1).unwrap();
        assert!(matches!(remove_neurons(&m, &[vec![false; 4]]), Err(PruneError::EmptyLayer { .. })));
        assert!(matches!(remove_neurons(&m, &[vec![true; 3]]), Err(PruneError::Shape { .. })));
        assert!(matches!(remove_neurons(&m, &[]), Err(PruneError::Shape { .. })));
        assert_eq!(remove_neurons(&m, &[vec![true; 4]]).unwrap(), m);
    }

    #[test]
    fn finds_prunable_layers_of_lenet() {
        let m = Model::from_spec("lenet5", [1, 28, 28], 10, Init::PyTorchDefault, 1).unwrap();
        let pl = prunable_layers(&m).unwrap();
        let w: Vec<(usize, usize, bool)> = pl.iter().map(|p| (p.neurons, p.positions, p.conv)).collect();
        assert_eq!(w, vec![(6, 784, true), (16, 100, true), (120, 1, false), (84, 1, false)]);
    }
}
