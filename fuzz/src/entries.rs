//! One entry point per fuzz target: each takes arbitrary bytes, feeds them to a parser
//! of actprune (IDX files, model files, model specs, pruning plans) and panics only when
//! the library misbehaves: a panic inside the library, or a broken invariant of a
//! value it accepted. Returning an error is the right answer to bad input and passes.
//!
//! Kept free of libfuzzer-sys so that `tests/tests/fuzz_regressions.rs` can include this
//! file by path and replay `fuzz/corpus/*` and `fuzz/regressions/*` under `cargo test`.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use mnist_io::{Dataset, Normalize, write_batch};
use net::{Init, LayerSpec, Model, Workspace};
use prune::{Amount, Plan};

/// The fuzz targets, by name: the folder names under `fuzz/corpus/` and `fuzz/regressions/`.
pub const TARGETS: [&str; 4] = ["idx", "model_file", "spec", "plan"];

/// Runs the entry point of `target` (one of [`TARGETS`]) on `data`.
///
/// # Panics
/// On an unknown target name, and whenever the entry point itself panics.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "idx" => idx(data),
        "model_file" => model_file(data),
        "spec" => spec(data),
        "plan" => plan(data),
        other => panic!("unknown fuzz target `{other}`"),
    }
}

/// A scratch folder per thread (on `/dev/shm` when it exists, so that the per-input
/// files cost no disk I/O), removed when the thread ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let base =
            if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let id =
            format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
        let dir = base.join(format!("actprune-fuzz-{}-{id}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create the fuzz scratch folder");
        Scratch(dir)
    }

    /// Writes `bytes` to `name` in the scratch folder and returns its path.
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("cannot write a fuzz scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

fn with_scratch<R>(f: impl FnOnce(&Scratch) -> R) -> R {
    SCRATCH.with(|s| f(s.borrow_mut().get_or_insert_with(Scratch::new)))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// The IDX parser (`Dataset::open`), raw and `.gz`.
///
/// Input layout: byte 0 = flags (bit 0: gzip the images file, bit 1: gzip the labels
/// file), bytes 1..3 = big-endian `u16` length `n` of the images file, then `n` bytes of
/// images file and the rest as labels file. The files are written to a scratch folder
/// because mnist-io maps files by path (the real code path, mmap included).
pub fn idx(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some((len, rest)) = rest.split_first_chunk::<2>() else { return };
    let n = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (images, labels) = rest.split_at(n);
    let images = if flags & 1 != 0 { gzip(images) } else { images.to_vec() };
    let labels = if flags & 2 != 0 { gzip(labels) } else { labels.to_vec() };
    with_scratch(|s| {
        let ip = s.write("images", &images);
        let lp = s.write("labels", &labels);
        let Ok(ds) = Dataset::open(&ip, &lp) else { return };
        // Accepted: every view must agree with the header.
        let (rows, cols) = ds.image_dims();
        assert!(!ds.is_empty() && rows > 0 && cols > 0);
        assert_eq!(ds.images().len(), ds.len() * rows * cols);
        assert_eq!(ds.labels().len(), ds.len());
        assert_eq!(ds.image(ds.len() - 1).len(), rows * cols);
        let max = ds.labels().iter().copied().max().map_or(0, usize::from);
        assert_eq!(ds.num_classes(), max + 1);
        assert!(ds.check_labels(ds.num_classes()).is_ok());
        assert!(ds.check_labels(max).is_err());
        // A small batch through write_batch, which must only read what the header says.
        if rows * cols <= 1 << 16 {
            let idx: Vec<u32> = (0..ds.len().min(3) as u32).collect();
            let mut px = vec![f32::NAN; idx.len() * rows * cols];
            let mut lb = vec![u32::MAX; idx.len()];
            write_batch(&ds, &idx, Normalize::default(), &mut px, &mut lb);
            assert!(px.iter().all(|x| x.is_finite()));
            assert!(lb.iter().zip(&idx).all(|(&l, &i)| l == u32::from(ds.label(i as usize))));
        }
    });
}

/// Model-file loading (`net::load`): names, shapes, dtypes and metadata as they come.
/// An accepted file must save and load again to the same bits.
pub fn model_file(data: &[u8]) {
    with_scratch(|s| {
        let path = s.write("model.safetensors", data);
        let Ok((model, meta)) = net::load(&path) else { return };
        assert!(meta.keys().all(|k| !net::model_file::RESERVED_KEYS.contains(&k.as_str())));
        let again = s.0.join("again.safetensors");
        net::save(&model, &again, &meta).expect("an accepted model must save");
        let (back, meta2) = net::load(&again).expect("a saved model must load");
        assert_eq!(meta, meta2);
        assert_same_bits(&model, &back);
        // A forward pass on a small batch, when the model is small enough to run quickly.
        let [c, h, w] = model.input_shape();
        if c * h * w <= 1 << 14 && model.macs() <= 1 << 22 {
            let mut ws = Workspace::default();
            let input = vec![0.5f32; 2 * c * h * w];
            let logits = model.forward(&input, 2, &mut ws).expect("a loaded model must run");
            assert_eq!(logits.len(), 2 * model.num_classes());
        }
    });
}

fn assert_same_bits(a: &Model, b: &Model) {
    assert_eq!(a.spec(), b.spec());
    assert_eq!(a.input_shape(), b.input_shape());
    assert_eq!(a.num_classes(), b.num_classes());
    for (la, lb) in a.layers().iter().zip(b.layers()) {
        let bits = |l: &net::Layer| {
            l.params().map(|(w, b)| w.iter().chain(b).map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        assert_eq!(bits(la), bits(lb));
    }
}

/// The spec parser (`net::parse_spec`) and, for specs small enough to run quickly,
/// `Model::from_spec` and a forward pass on a small input. The canonical form of an
/// accepted spec must parse back to the same layers.
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(layers) = net::parse_spec(text) else { return };
    let canonical = net::spec::spec_string(&layers);
    if text.trim() != "lenet5" && !text.trim().starts_with("mlp:") {
        assert_eq!(net::parse_spec(&canonical).expect("the canonical form must parse"), layers);
    }
    // Widths and geometry bounded so that one input builds and runs in well under a
    // millisecond; the parser itself saw the unbounded values above.
    let small = layers.len() <= 12
        && layers.iter().all(|l| match *l {
            LayerSpec::Conv2d { out_channels, kernel, stride, padding } => {
                out_channels <= 16 && kernel <= 7 && stride <= 4 && padding <= 3
            }
            LayerSpec::Linear { out_features } => out_features <= 64,
            LayerSpec::MaxPool2d { kernel } => kernel <= 8,
            LayerSpec::Relu | LayerSpec::Flatten => true,
        });
    if !small {
        return;
    }
    let classes = match layers.last() {
        Some(LayerSpec::Linear { out_features }) => *out_features,
        _ => 10,
    };
    for input in [[1, 12, 12], [3, 5, 7]] {
        let Ok(model) = Model::from_spec(text, input, classes, Init::KaimingNormal, 1) else { continue };
        assert_eq!(model.input_shape(), input);
        assert_eq!(model.num_classes(), classes);
        let [c, h, w] = input;
        let mut ws = Workspace::default();
        let x: Vec<f32> = (0..2 * c * h * w).map(|i| (i % 7) as f32 / 7.0).collect();
        let logits = model.forward(&x, 2, &mut ws).expect("a built model must run");
        assert_eq!(logits.len(), 2 * classes);
        assert!(logits.iter().all(|v| v.is_finite()));
    }
}

/// A little-endian reader over the fuzzer's bytes that yields zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    fn f64(&mut self) -> f64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        // Half the time a raw bit pattern (NaN, ∞, subnormals, huge), half the time a
        // value near the accepted ranges, where the interesting edges are.
        if b[7] & 0x80 != 0 {
            f64::from_le_bytes(b)
        } else {
            f64::from(i16::from_le_bytes([b[0], b[1]])) / 8192.0
        }
    }
}

/// The pruning plan: `Plan::validate` and `Plan::masks` on an amount, a layer
/// selection and scores all taken from the input. Checks the plan's promises on every
/// accepted input: one mask per layer and per neuron, no layer emptied, unselected
/// layers untouched, ratios removing exactly `min(⌊r·n⌋, n − 1)`.
pub fn plan(data: &[u8]) {
    let mut b = Bytes(data);
    let num_layers = usize::from(b.u8() % 5);
    let scores: Vec<Vec<f64>> =
        (0..num_layers).map(|_| (0..usize::from(b.u8() % 40)).map(|_| b.f64()).collect()).collect();
    let kind = b.u8();
    let amount = match kind % 5 {
        0 => Amount::Ratio(b.f64()),
        1 => Amount::Ratios((0..usize::from(b.u8() % 6)).map(|_| b.f64()).collect()),
        2 => Amount::Global(b.f64()),
        3 => Amount::Threshold(b.f64()),
        _ => Amount::MaxDrop(b.f64()),
    };
    let layers =
        (kind & 0x80 != 0).then(|| (0..usize::from(b.u8() % 6)).map(|_| usize::from(b.u8() % 7)).collect());
    let plan = Plan { amount, layers };
    let valid = plan.validate(num_layers).is_ok();
    let masks = plan.masks(&scores);
    let Ok(masks) = masks else { return };
    assert!(valid, "masks accepted a plan that validate rejected: {plan:?}");
    assert_eq!(masks.len(), scores.len());
    for (l, (m, s)) in masks.iter().zip(&scores).enumerate() {
        assert_eq!(m.len(), s.len());
        let kept = m.iter().filter(|&&k| k).count();
        if !s.is_empty() {
            assert!(kept >= 1, "layer {l} emptied by {plan:?}");
        }
        let selected = plan.layers.as_ref().is_none_or(|sel| sel.contains(&l));
        if !selected {
            assert_eq!(kept, s.len(), "unselected layer {l} pruned by {plan:?}");
        }
        let ratio = match &plan.amount {
            Amount::Ratio(r) => Some(*r),
            Amount::Ratios(rs) => Some(rs[l]),
            _ => None,
        };
        if let (Some(r), true) = (ratio, selected) {
            let want = ((r * s.len() as f64).floor() as usize).min(s.len().saturating_sub(1));
            assert_eq!(s.len() - kept, want, "layer {l}: {plan:?}");
        }
    }
    // Pruning decisions are a pure function of the plan and the scores.
    assert_eq!(plan.masks(&scores).ok(), Some(masks));
}
