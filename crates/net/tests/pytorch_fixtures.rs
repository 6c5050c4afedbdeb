//! Every tensor of the PyTorch fixtures in `../shared/fixtures/` (made by
//! `generate.py` there): activations of every module, logits, loss, all parameter
//! gradients and the parameters after one and two SGD steps, matched to 1e-4 relative
//! error (max |ours − torch| / max |torch| per tensor). The max differences are printed.

use std::path::PathBuf;

use net::{Init, Model, Sgd, Workspace};
use safetensors::{Dtype, SafeTensors};

/// Tolerance on max |ours − torch| / max |torch| per tensor.
const TOL: f64 = 1e-4;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(name)
}

fn f32s(st: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn labels(st: &SafeTensors<'_>) -> Vec<u32> {
    let t = st.tensor("labels").unwrap();
    assert_eq!(t.dtype(), Dtype::I64);
    t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32).collect()
}

/// Compares and prints; returns the relative error.
fn compare(what: &str, ours: &[f32], torch: &[f32]) -> f64 {
    assert_eq!(ours.len(), torch.len(), "{what}: length");
    let max_ref = torch.iter().map(|v| f64::from(v.abs())).fold(0.0, f64::max);
    let max_diff = ours.iter().zip(torch).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max);
    let rel = max_diff / max_ref.max(1e-12);
    println!("{what:>18}: max |diff| {max_diff:.3e}, max |torch| {max_ref:.3e}, relative {rel:.3e}");
    rel
}

fn load_init(st: &SafeTensors<'_>, spec: &str) -> Model {
    let mut model = Model::from_spec(spec, [1, 28, 28], 10, Init::PyTorchDefault, 0).unwrap();
    for (i, layer) in model.layers_mut().iter_mut().enumerate() {
        if let Some((w, b)) = layer.params_mut() {
            w.copy_from_slice(&f32s(st, &format!("init.{i}.weight")));
            b.copy_from_slice(&f32s(st, &format!("init.{i}.bias")));
        }
    }
    model
}

fn check_fixture(file: &str, spec: &str) {
    let bytes = std::fs::read(fixture_path(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let meta = SafeTensors::read_metadata(&bytes).unwrap().1;
    let meta = meta.metadata().clone().unwrap();
    let lr: f32 = meta["lr"].parse().unwrap();
    let momentum: f32 = meta["momentum"].parse().unwrap();
    let input = f32s(&st, "input");
    let labels = labels(&st);
    let batch = labels.len();
    let mut model = load_init(&st, spec);
    let mut ws = Workspace::default();
    let mut worst: f64 = 0.0;

    // Every module's output, unfused.
    let mut acts = Vec::new();
    model.forward_inspect(&input, batch, &mut ws, &mut |i, out, _| acts.push((i, out.to_vec()))).unwrap();
    assert_eq!(acts.len(), model.layers().len());
    for (i, out) in &acts {
        worst = worst.max(compare(&format!("act.{i}"), out, &f32s(&st, &format!("act.{i}"))));
    }
    // Fused inference.
    let logits = model.forward(&input, batch, &mut ws).unwrap().to_vec();
    worst = worst.max(compare("logits", &logits, &f32s(&st, "logits")));

    // Gradients, fused (training) and unfused (inspection) paths.
    let (loss, _) = model.forward_backward(&input, &labels, batch, &mut ws).unwrap();
    worst = worst.max(compare("loss", &[loss], &f32s(&st, "loss")));
    let mut ws2 = Workspace::default();
    let loss2 = model.inspect_gradients(&input, &labels, batch, &mut ws2, &mut |_, _, _, _| {}).unwrap();
    assert_eq!(loss, loss2);
    for i in 0..model.layers().len() {
        let Some((gw, gb)) = ws.param_grads(i) else { continue };
        worst = worst.max(compare(&format!("grad.{i}.weight"), gw, &f32s(&st, &format!("grad.{i}.weight"))));
        worst = worst.max(compare(&format!("grad.{i}.bias"), gb, &f32s(&st, &format!("grad.{i}.bias"))));
        let (uw, ub) = ws2.param_grads(i).unwrap();
        worst = worst.max(compare(&format!("unfused grad.{i}.w"), uw, gw));
        worst = worst.max(compare(&format!("unfused grad.{i}.b"), ub, gb));
    }

    // Two SGD steps on the same batch.
    let mut sgd = Sgd::new(lr, momentum, 0.0, false);
    for step in 1..=2 {
        model.forward_backward(&input, &labels, batch, &mut ws).unwrap();
        sgd.step(&mut model, &ws).unwrap();
        for (i, layer) in model.layers().iter().enumerate() {
            let Some((w, b)) = layer.params() else { continue };
            worst = worst.max(compare(
                &format!("step{step}.{i}.weight"),
                w,
                &f32s(&st, &format!("step{step}.{i}.weight")),
            ));
            worst = worst.max(compare(
                &format!("step{step}.{i}.bias"),
                b,
                &f32s(&st, &format!("step{step}.{i}.bias")),
            ));
        }
    }
    println!("{file}: worst relative error {worst:.3e}");
    assert!(worst <= TOL, "{file}: worst relative error {worst:.3e} > {TOL:e}");
}

#[test]
fn lenet5_matches_pytorch() {
    check_fixture("lenet5_sgd.safetensors", "lenet5");
}

#[test]
fn mlp_matches_pytorch() {
    check_fixture("mlp_sgd.safetensors", "mlp:784-64-32-10");
}

/// A PyTorch state_dict saved as safetensors (here: the fixture's `init.*` tensors
/// under their `state_dict()` names) with our metadata loads through `net::load` and
/// gives PyTorch's logits — how PyTorch-trained models evaluate here.
#[test]
fn pytorch_state_dict_file_loads_and_matches_logits() {
    use std::collections::HashMap;

    use safetensors::tensor::TensorView;
    for (file, spec) in [("lenet5_sgd.safetensors", "lenet5"), ("mlp_sgd.safetensors", "mlp:784-64-32-10")] {
        let bytes = std::fs::read(fixture_path(file)).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let state: Vec<(String, TensorView<'_>)> = st
            .tensors()
            .into_iter()
            .filter_map(|(name, view)| name.strip_prefix("init.").map(|n| (n.to_string(), view)))
            .collect();
        let meta = HashMap::from([
            ("spec".to_string(), spec.to_string()),
            ("input_shape".to_string(), "1,28,28".to_string()),
            ("num_classes".to_string(), "10".to_string()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("torch.safetensors");
        std::fs::write(&path, safetensors::serialize(state, Some(meta)).unwrap()).unwrap();
        let (model, _) = net::load(&path).unwrap();
        let input = f32s(&st, "input");
        let mut ws = Workspace::default();
        let logits = model.forward(&input, 8, &mut ws).unwrap();
        let rel = compare(&format!("{file} loaded logits"), logits, &f32s(&st, "logits"));
        assert!(rel <= TOL);
    }
}
