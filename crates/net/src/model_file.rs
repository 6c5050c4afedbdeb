//! Model files: safetensors with the names and layouts of
//! `torch.nn.Sequential.state_dict()` — `<module index>.weight` and `.bias`, Linear
//! `[out, in]`, Conv2d `[out, in, kh, kw]`, f32 little-endian — so that a file written
//! here loads into the equivalent `nn.Sequential` and one written by PyTorch (with the
//! metadata below) evaluates here.
//!
//! `__metadata__` holds `format = "pt"`, `spec` (the canonical general-form spec),
//! `input_shape` (`"C,H,W"`) and `num_classes`, plus any caller-supplied entries.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::{Init, LayerSpec, Model, NetError};

/// Metadata keys that `save` writes and `load` interprets; callers cannot override them.
pub const RESERVED_KEYS: [&str; 4] = ["format", "spec", "input_shape", "num_classes"];

fn file_error(path: &Path, problems: Vec<String>) -> NetError {
    NetError::ModelFile { path: path.to_path_buf(), problems }
}

/// Writes `model` to `path` atomically (a temporary file in the same folder, then a
/// rename), with `extra_metadata` added to the safetensors metadata.
///
/// # Errors
/// [`NetError::ModelFile`] when `extra_metadata` uses a reserved key;
/// [`NetError::Io`] when writing or renaming fails.
pub fn save(model: &Model, path: &Path, extra_metadata: &BTreeMap<String, String>) -> Result<(), NetError> {
    if let Some(k) = extra_metadata.keys().find(|k| RESERVED_KEYS.contains(&k.as_str())) {
        return Err(file_error(path, vec![format!("metadata key `{k}` is reserved")]));
    }
    let mut meta: HashMap<String, String> = extra_metadata.clone().into_iter().collect();
    let [c, h, w] = model.input_shape();
    meta.insert("format".into(), "pt".into());
    meta.insert("spec".into(), model.spec());
    meta.insert("input_shape".into(), format!("{c},{h},{w}"));
    meta.insert("num_classes".into(), model.num_classes().to_string());

    let mut tensors = Vec::new();
    for (i, layer) in model.layers().iter().enumerate() {
        let (Some((w, b)), Some((ws, bs))) = (layer.params(), layer.param_shapes()) else { continue };
        tensors.push((format!("{i}.weight"), bytes_of(w), ws));
        tensors.push((format!("{i}.bias"), bytes_of(b), bs));
    }
    let views = tensors
        .iter()
        .map(|(name, data, shape)| {
            TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|v| (name.as_str(), v))
                .map_err(|e| file_error(path, vec![format!("tensor {name}: {e}")]))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes =
        safetensors::serialize(views, Some(meta)).map_err(|e| file_error(path, vec![e.to_string()]))?;
    write_atomic(path, &canonical_header(bytes))
}

/// safetensors writes the metadata in `HashMap` order, which differs from one map to
/// the next, so the same model gave different files. The header is rewritten with its
/// keys sorted: the same entries give a JSON text of the same length, so the data
/// offsets stay valid. Bytes that are not as expected are returned unchanged.
fn canonical_header(mut bytes: Vec<u8>) -> Vec<u8> {
    type Header = BTreeMap<String, BTreeMap<String, serde_json::Value>>;
    let Some(n) = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes) else {
        return bytes;
    };
    let Some(end) = usize::try_from(n).ok().and_then(|n| n.checked_add(8)).filter(|&e| e <= bytes.len())
    else {
        return bytes;
    };
    let Ok(sorted) = serde_json::from_slice::<Header>(&bytes[8..end]) else { return bytes };
    let Ok(mut json) = serde_json::to_vec(&sorted) else { return bytes };
    if json.len() > end - 8 {
        return bytes;
    }
    // safetensors pads the header with spaces to a multiple of 8 bytes; so do we.
    json.resize(end - 8, b' ');
    bytes[8..end].copy_from_slice(&json);
    bytes
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    let io = |source| NetError::Io { path: path.to_path_buf(), source };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else {
        remove_stale_temporaries(path, &name);
    }
    result.map_err(io)
}

/// Removes `.NAME.tmp.PID` siblings left by writers that were killed mid-write (a
/// killed process cannot clean up after itself). Only where a process table can be
/// read (`/proc`), and only files whose PID names no running process, so a concurrent
/// writer's file is never touched. Best effort: failures are ignored.
fn remove_stale_temporaries(path: &Path, name: &str) {
    let proc_fs = Path::new("/proc");
    if !proc_fs.join("self").exists() {
        return;
    }
    let Some(dir) = path.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d }) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let prefix = format!(".{name}.tmp.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else { continue };
        if pid.parse::<u32>().is_ok() && !proc_fs.join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Reads a model file written by [`save`] (or by PyTorch with the same names and
/// metadata). Returns the model and the metadata entries other than the reserved ones.
///
/// # Errors
/// [`NetError::Io`] when the file cannot be read; [`NetError::ModelFile`] listing every
/// problem found: a truncated or malformed file, missing or unparsable metadata, and
/// each missing, unexpected, mis-shaped or non-f32 tensor.
pub fn load(path: &Path) -> Result<(Model, BTreeMap<String, String>), NetError> {
    let bytes = std::fs::read(path).map_err(|source| NetError::Io { path: path.to_path_buf(), source })?;
    load_bytes(&bytes).map_err(|problems| file_error(path, problems))
}

/// [`load`] from a byte buffer; the errors are the problems found.
fn load_bytes(bytes: &[u8]) -> Result<(Model, BTreeMap<String, String>), Vec<String>> {
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| vec![format!("not a valid safetensors file: {e}")])?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| vec![format!("bad header: {e}")])?;
    let meta = header.metadata().clone().unwrap_or_default();
    let mut problems = Vec::new();
    let get = |key: &str, problems: &mut Vec<String>| {
        let v = meta.get(key).cloned();
        if v.is_none() {
            problems.push(format!("metadata has no `{key}`"));
        }
        v
    };
    let spec = get("spec", &mut problems);
    let input = get("input_shape", &mut problems).and_then(|s| {
        let dims: Vec<usize> = s.split(',').filter_map(|d| d.trim().parse().ok()).collect();
        let shape: Option<[usize; 3]> = dims.try_into().ok();
        if shape.is_none() {
            problems.push(format!("metadata input_shape `{s}` is not `C,H,W`"));
        }
        shape
    });
    let classes = get("num_classes", &mut problems).and_then(|s| {
        let n = s.trim().parse::<usize>().ok();
        if n.is_none() {
            problems.push(format!("metadata num_classes `{s}` is not a number"));
        }
        n
    });
    let (Some(spec), Some(input), Some(classes)) = (spec, input, classes) else { return Err(problems) };
    // Building the model allocates what the metadata claims; a hostile file of a few
    // bytes could claim terabytes. Every parameter must be in the file, so the file's
    // length bounds the parameter count before anything is allocated.
    let budget = bytes.len() / 4;
    match crate::parse_spec(&spec).map(|layers| implied_params(&layers, input)) {
        Ok(None) => {
            return Err(vec![format!(
                "metadata spec `{spec}` on input {input:?} implies more parameters than memory can address"
            )]);
        }
        Ok(Some(n)) if n > budget => {
            return Err(vec![format!(
                "metadata spec `{spec}` on input {input:?} implies {n} parameters, the file holds at most {budget}"
            )]);
        }
        _ => {}
    }
    let mut model =
        Model::from_spec(&spec, input, classes, Init::PyTorchDefault, 0).map_err(|e| vec![e.to_string()])?;

    let mut expected = Vec::new();
    for (i, layer) in model.layers_mut().iter_mut().enumerate() {
        let Some((wshape, bshape)) = layer.param_shapes() else { continue };
        let Some((w, b)) = layer.params_mut() else { continue };
        for (name, shape, dst) in [(format!("{i}.weight"), wshape, w), (format!("{i}.bias"), bshape, b)] {
            match st.tensor(&name) {
                Err(_) => problems.push(format!("tensor `{name}` is missing (expected f32 {shape:?})")),
                Ok(t) => {
                    if t.dtype() != Dtype::F32 {
                        problems.push(format!("tensor `{name}` is {:?}, expected F32", t.dtype()));
                    } else if t.shape() != shape.as_slice() {
                        problems
                            .push(format!("tensor `{name}` has shape {:?}, expected {shape:?}", t.shape()));
                    } else {
                        for (x, chunk) in dst.iter_mut().zip(t.data().chunks_exact(4)) {
                            *x = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                        }
                    }
                }
            }
            expected.push(name);
        }
    }
    let mut unexpected: Vec<String> =
        st.names().into_iter().filter(|n| !expected.iter().any(|e| e == n)).map(String::from).collect();
    unexpected.sort();
    for name in unexpected {
        problems.push(format!("unexpected tensor `{name}`"));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let extra = meta.into_iter().filter(|(k, _)| !RESERVED_KEYS.contains(&k.as_str())).collect();
    Ok((model, extra))
}

/// The parameter count of `layers` built on `input` (`[C, H, W]`), in checked
/// arithmetic: `None` when it overflows `usize`. The walk stops at the first layer that
/// does not fit its input (counting that layer's parameters, which `Model::from_spec`
/// allocates before it reports the misfit).
fn implied_params(layers: &[LayerSpec], input: [usize; 3]) -> Option<usize> {
    let [mut c, mut h, mut w] = input;
    c.checked_mul(h)?.checked_mul(w)?;
    let mut total = 0usize;
    for layer in layers {
        match *layer {
            LayerSpec::Conv2d { out_channels, kernel, stride, padding } => {
                let per_out = c.checked_mul(kernel)?.checked_mul(kernel)?.checked_add(1)?;
                total = total.checked_add(out_channels.checked_mul(per_out)?)?;
                let (hp, wp) =
                    (h.checked_add(padding.checked_mul(2)?)?, w.checked_add(padding.checked_mul(2)?)?);
                if hp < kernel || wp < kernel || stride == 0 {
                    return Some(total);
                }
                [c, h, w] = [out_channels, (hp - kernel) / stride + 1, (wp - kernel) / stride + 1];
            }
            LayerSpec::Linear { out_features } => {
                let features = c.checked_mul(h)?.checked_mul(w)?;
                total = total.checked_add(out_features.checked_mul(features.checked_add(1)?)?)?;
                [c, h, w] = [out_features, 1, 1];
            }
            LayerSpec::MaxPool2d { kernel } => {
                if kernel == 0 || h < kernel || w < kernel {
                    return Some(total);
                }
                [h, w] = [h / kernel, w / kernel];
            }
            LayerSpec::Flatten => [c, h, w] = [c.checked_mul(h)?.checked_mul(w)?, 1, 1],
            LayerSpec::Relu => {}
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lenet() -> Model {
        Model::from_spec("lenet5", [1, 28, 28], 10, Init::PyTorchDefault, 5).unwrap()
    }

    fn problems(r: Result<(Model, BTreeMap<String, String>), NetError>) -> Vec<String> {
        match r {
            Err(NetError::ModelFile { problems, .. }) => problems,
            Err(other) => panic!("wrong error {other}"),
            Ok(_) => panic!("loaded a bad file"),
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn saving_removes_temporaries_of_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        // PIDs stop at 2^22 on Linux: 999999999 was never a process. PID 1 always runs.
        let dead = dir.path().join(".m.safetensors.tmp.999999999");
        let live = dir.path().join(".m.safetensors.tmp.1");
        let other = dir.path().join(".n.safetensors.tmp.999999999");
        for f in [&dead, &live, &other] {
            std::fs::write(f, b"half a file").unwrap();
        }
        save(&lenet(), &path, &BTreeMap::new()).unwrap();
        assert!(!dead.exists(), "a killed writer's temporary is cleaned up");
        assert!(live.exists() && other.exists(), "a running writer's, or another file's, is not");
    }

    #[test]
    fn round_trip_keeps_every_bit_and_the_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let model = lenet();
        let extra = BTreeMap::from([("lr".to_string(), "0.05".to_string())]);
        save(&model, &path, &extra).unwrap();
        let (back, meta) = load(&path).unwrap();
        assert_eq!(back, model);
        assert_eq!(meta, extra);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut names = st.names();
        names.sort();
        assert_eq!(
            names,
            [
                "0.bias",
                "0.weight",
                "11.bias",
                "11.weight",
                "3.bias",
                "3.weight",
                "7.bias",
                "7.weight",
                "9.bias",
                "9.weight"
            ]
        );
        assert_eq!(st.tensor("3.weight").unwrap().shape(), [16, 6, 5, 5]);
        assert_eq!(st.tensor("7.weight").unwrap().shape(), [120, 400]);
        assert!(matches!(
            save(&model, &path, &BTreeMap::from([("spec".into(), "x".into())])),
            Err(NetError::ModelFile { .. })
        ));
    }

    #[test]
    fn truncated_and_corrupted_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        save(&lenet(), &path, &BTreeMap::new()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 4, 8, 100, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(!problems(load(&path)).is_empty(), "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[10] = b'#';
        std::fs::write(&path, &bad).unwrap();
        assert!(!problems(load(&path)).is_empty());
        let mut huge = bytes;
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &huge).unwrap();
        assert!(!problems(load(&path)).is_empty());
        assert!(matches!(load(&dir.path().join("missing")), Err(NetError::Io { .. })));
    }

    #[test]
    fn every_mismatch_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let meta = HashMap::from([
            ("spec".to_string(), "mlp:4-3-2".to_string()),
            ("input_shape".to_string(), "1,2,2".to_string()),
            ("num_classes".to_string(), "2".to_string()),
        ]);
        let w1 = vec![0u8; 4 * 12];
        let b1 = vec![0u8; 4 * 2]; // wrong: 3 expected
        let w3 = vec![0u8; 8 * 6]; // f64: wrong dtype
        let junk = vec![0u8; 4];
        let views = vec![
            ("1.weight", TensorView::new(Dtype::F32, vec![3, 4], &w1).unwrap()),
            ("1.bias", TensorView::new(Dtype::F32, vec![2], &b1).unwrap()),
            ("3.weight", TensorView::new(Dtype::F64, vec![2, 3], &w3).unwrap()),
            ("9.junk", TensorView::new(Dtype::F32, vec![1], &junk).unwrap()),
        ];
        std::fs::write(&path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
        let p = problems(load(&path));
        println!("{p:#?}");
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].contains("1.bias") && p[0].contains("[3]"));
        assert!(p[1].contains("3.weight") && p[1].contains("F64"));
        assert!(p[2].contains("3.bias") && p[2].contains("missing"));
        assert!(p[3].contains("9.junk"));
    }

    #[test]
    fn metadata_claiming_more_parameters_than_the_file_holds_is_refused() {
        // Found by the hardening review: without the bound, loading this 150-byte file
        // tried to allocate 4·10¹⁵ bytes of weights.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        for (spec, input) in [("flatten,fc4000000000", "1,1000,1000"), ("fc2", "99999999999,99999999999,9")] {
            let meta = HashMap::from([
                ("spec".to_string(), spec.to_string()),
                ("input_shape".to_string(), input.to_string()),
                ("num_classes".to_string(), "2".to_string()),
            ]);
            let views: Vec<(&str, TensorView<'_>)> = Vec::new();
            std::fs::write(&path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
            let p = problems(load(&path));
            assert!(p.len() == 1 && p[0].contains("parameters"), "{spec}: {p:?}");
        }
        assert_eq!(implied_params(&crate::parse_spec("lenet5").unwrap(), [1, 28, 28]), Some(61_706));
    }

    #[test]
    fn the_same_model_gives_the_same_file_bytes() {
        // Found by the hardening determinism test: the metadata came out in HashMap order.
        let dir = tempfile::tempdir().unwrap();
        let model = lenet();
        let extra: BTreeMap<String, String> = (0..8).map(|i| (format!("key{i}"), format!("v{i}"))).collect();
        let files: Vec<Vec<u8>> = (0..6)
            .map(|i| {
                let path = dir.path().join(format!("m{i}.safetensors"));
                save(&model, &path, &extra).unwrap();
                std::fs::read(&path).unwrap()
            })
            .collect();
        assert!(files.iter().all(|f| f == &files[0]), "the same model saved to different bytes");
        let (back, meta) = load(&dir.path().join("m0.safetensors")).unwrap();
        assert_eq!((back, meta), (model, extra));
    }
}
