//! Finite-difference gradient checks through every kind of layer: Conv2d (with stride
//! and padding), ReLU, MaxPool2d (with a window that does not divide the input),
//! Flatten, Linear and the softmax cross-entropy. The gradient of the first layer's
//! parameters passes back through all of them, so each backward is exercised.
//!
//! In f32 the central difference `(L(w + h) − L(w − h)) / 2h` with `h = 2e-3` is
//! accurate to about 1e-3 relative plus the loss's rounding (~1e-4 absolute); a ReLU
//! or pooling switch crossed by the step spoils single elements, so each tensor is
//! judged by the share of elements that agree (`|fd − g| ≤ 5%·|g| + 3e-4`), which must
//! be at least 85%; a wrong backward pass gets most elements wrong.

use net::{Init, Model, Workspace};

fn loss(model: &Model, input: &[f32], labels: &[u32], ws: &mut Workspace) -> f64 {
    f64::from(model.forward_backward(input, labels, labels.len(), ws).unwrap().0)
}

fn check(spec: &str, input_shape: [usize; 3], classes: usize, init: Init) {
    let mut model = Model::from_spec(spec, input_shape, classes, init, 42).unwrap();
    let batch = 4;
    let len = batch * input_shape.iter().product::<usize>();
    // A deterministic, irregular input.
    let input: Vec<f32> = (0..len).map(|i| ((i * 7919 % 1013) as f32 / 506.0) - 1.0).collect();
    let labels: Vec<u32> = (0..batch as u32).map(|b| b % classes as u32).collect();
    let mut ws = Workspace::default();
    loss(&model, &input, &labels, &mut ws);
    let grads: Vec<Option<(Vec<f32>, Vec<f32>)>> =
        (0..model.layers().len()).map(|i| ws.param_grads(i).map(|(w, b)| (w.to_vec(), b.to_vec()))).collect();
    let h = 2e-3f32;
    for (i, g) in grads.iter().enumerate() {
        let Some((gw, gb)) = g else { continue };
        for (which, analytic) in [("weight", gw), ("bias", gb)] {
            let (mut agree, mut total, mut den) = (0usize, 0usize, 0.0f64);
            // Up to 60 elements spread over the tensor keep the test quick.
            let step = (analytic.len() / 60).max(1);
            for k in (0..analytic.len()).step_by(step) {
                let set = |model: &mut Model, v: f32| {
                    let (w, b) = model.layers_mut()[i].params_mut().unwrap();
                    if which == "weight" { w[k] = v } else { b[k] = v }
                };
                let orig = model.layers()[i]
                    .params()
                    .map(|(w, b)| if which == "weight" { w[k] } else { b[k] })
                    .unwrap();
                set(&mut model, orig + h);
                let up = loss(&model, &input, &labels, &mut ws);
                set(&mut model, orig - h);
                let down = loss(&model, &input, &labels, &mut ws);
                set(&mut model, orig);
                let fd = (up - down) / (2.0 * f64::from(h));
                if std::env::var_os("GC_DEBUG").is_some() {
                    println!("  {k}: fd {fd:.5e} g {:.5e}", analytic[k]);
                }
                let g = f64::from(analytic[k]);
                agree += usize::from((fd - g).abs() <= 0.05 * g.abs() + 3e-4);
                total += 1;
                den += f64::from(analytic[k]).powi(2);
            }
            let share = agree as f64 / total as f64;
            println!("{spec} layer {i} {which}: {agree}/{total} elements agree (‖g‖ = {:.2e})", den.sqrt());
            assert!(den.sqrt() > 1e-2, "layer {i} {which}: near-zero gradient, the check would be vacuous");
            assert!(share >= 0.85, "layer {i} {which}: only {agree}/{total} elements agree");
        }
    }
}

#[test]
fn conv_relu_pool_flatten_linear_gradients_match_finite_differences() {
    check("conv4k3s2p1,relu,pool3,conv5k2p1,relu,flatten,fc7,relu,fc5", [2, 11, 11], 5, Init::KaimingNormal);
}

#[test]
fn pool_before_relu_and_padding_gradients_match_finite_differences() {
    // Pooling straight after the convolution (no ReLU mask folded into it), ReLU after.
    check("conv6k3p1,pool2,relu,conv4k3s1p1,relu,flatten,fc4", [2, 10, 10], 4, Init::KaimingNormal);
}

#[test]
fn mlp_gradients_match_finite_differences() {
    check("mlp:48-9-6-3", [3, 4, 4], 3, Init::XavierNormal);
}
