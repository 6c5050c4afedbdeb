//! Recording: one parallel pass of a model over a dataset subset (the validation
//! split — pruning never looks at the test set) that fills an [`ActivationStatus`].
//!
//! The indices are cut into chunks of `batch` inputs; `kernels::team` runs the chunks
//! in parallel, each thread with its own [`net::Workspace`], and their statuses are appended in
//! chunk order, so the result is identical for any thread count. The same pattern
//! serves [`accuracy`] and the gradient pass of the Taylor criterion.

use mnist_io::{Dataset, Normalize, write_batch};
use net::{Model, Workspace};

use crate::PruneError;
use crate::status::{ActivationStatus, ConvDecision, LayerStatus};
use crate::surgery::prunable_layers;

/// A dataset subset to run a model over.
#[derive(Clone, Copy)]
pub struct Data<'a> {
    /// The images and labels.
    pub dataset: &'a Dataset,
    /// Which images (indices into `dataset`), in order.
    pub indices: &'a [u32],
    /// Pixel normalisation, as used in training.
    pub norm: Normalize,
    /// Inputs per chunk (a unit of parallel work and one forward pass).
    pub batch: usize,
}

impl<'a> Data<'a> {
    /// `indices` of `dataset` with the default normalisation and chunks of 256.
    pub fn new(dataset: &'a Dataset, indices: &'a [u32]) -> Data<'a> {
        Data { dataset, indices, norm: Normalize::default(), batch: 256 }
    }

    fn check(&self, model: &Model) -> Result<(), PruneError> {
        if self.batch == 0 {
            return Err(PruneError::InvalidParameter {
                name: "batch",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if let Some(&i) = self.indices.iter().find(|&&i| i as usize >= self.dataset.len()) {
            return Err(PruneError::Shape {
                context: "Data index beyond the dataset",
                expected: self.dataset.len(),
                got: i as usize,
            });
        }
        let s = model.input_shape();
        if s[0] * s[1] * s[2] != self.dataset.image_len() {
            return Err(PruneError::Shape {
                context: "model input size vs image size",
                expected: s[0] * s[1] * s[2],
                got: self.dataset.image_len(),
            });
        }
        if model.num_classes() < self.dataset.num_classes() {
            return Err(PruneError::Shape {
                context: "model classes vs dataset classes",
                expected: self.dataset.num_classes(),
                got: model.num_classes(),
            });
        }
        Ok(())
    }

    /// Runs `f(images, labels, n)` on every chunk in parallel (each with its own
    /// workspace) and returns the results in chunk order.
    pub(crate) fn map_chunks<T, F>(&self, f: F) -> Result<Vec<T>, PruneError>
    where
        T: Send,
        F: Fn(&[f32], &[u32], usize, &mut Workspace) -> Result<T, PruneError> + Sync,
    {
        let len = self.dataset.image_len();
        kernels::team::map_init(
            self.indices.chunks(self.batch).collect(),
            || (Workspace::default(), Vec::new(), Vec::new()),
            |(ws, images, labels), _, chunk| {
                images.resize(chunk.len() * len, 0.0);
                labels.resize(chunk.len(), 0);
                write_batch(self.dataset, chunk, self.norm, images, labels);
                f(images, labels, chunk.len(), ws)
            },
        )
        .into_iter()
        .collect()
    }
}

/// Index of the largest logit of each row of `logits` (`n × classes`); the lowest
/// class wins ties.
pub fn argmax_rows(logits: &[f32], classes: usize) -> impl Iterator<Item = u32> + '_ {
    logits.chunks_exact(classes).map(|row| {
        let mut best = 0;
        for (c, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = c;
            }
        }
        best as u32
    })
}

/// Records the activation status of every prunable layer of `model` over `data`.
///
/// # Errors
/// [`PruneError::Shape`] when the data does not fit the model; errors of the passes.
pub fn record(
    model: &Model,
    data: &Data<'_>,
    decision: ConvDecision,
) -> Result<ActivationStatus, PruneError> {
    data.check(model)?;
    let prunable = prunable_layers(model)?;
    let last = model.layers().len() - 1;
    let classes = model.num_classes();
    let chunks = data.map_chunks(|images, labels, n, ws| {
        let mut layers: Vec<LayerStatus> =
            prunable.iter().map(|p| LayerStatus::new(p.relu, p.neurons, p.positions)).collect();
        let mut predictions = Vec::with_capacity(n);
        let mut failed = None;
        model.forward_inspect(images, n, ws, &mut |i, out, _shape| {
            if let Some(slot) = prunable.iter().position(|p| p.relu == i) {
                if let Err(e) = layers[slot].record_batch(out, n, decision) {
                    failed.get_or_insert(e);
                }
            } else if i == last {
                predictions.extend(argmax_rows(out, classes));
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok((layers, labels.to_vec(), predictions))
    })?;
    let mut status = ActivationStatus {
        layers: prunable.iter().map(|p| LayerStatus::new(p.relu, p.neurons, p.positions)).collect(),
        labels: Vec::with_capacity(data.indices.len()),
        predictions: Vec::with_capacity(data.indices.len()),
        num_classes: classes,
    };
    for (layers, labels, predictions) in chunks {
        for (all, part) in status.layers.iter_mut().zip(&layers) {
            all.append(part)?;
        }
        status.labels.extend(labels);
        status.predictions.extend(predictions);
    }
    for l in &mut status.layers {
        l.decide_above_mean();
    }
    Ok(status)
}

/// Fraction of `data` the model classifies correctly, in [0, 1] (0 for no inputs).
///
/// # Errors
/// As [`record`].
pub fn accuracy(model: &Model, data: &Data<'_>) -> Result<f64, PruneError> {
    data.check(model)?;
    let classes = model.num_classes();
    let correct: Vec<usize> = data.map_chunks(|images, labels, n, ws| {
        let logits = model.forward(images, n, ws)?;
        Ok(argmax_rows(logits, classes).zip(labels).filter(|(p, l)| p == *l).count())
    })?;
    Ok(correct.iter().sum::<usize>() as f64 / data.indices.len().max(1) as f64)
}

#[cfg(test)]
pub(crate) mod testdata {
    //! Tiny synthetic IDX datasets written to a temporary folder.

    use std::path::Path;

    use mnist_io::Dataset;

    /// Writes `images` (`n × rows × cols` bytes) and `labels` as IDX files in `dir`
    /// and opens them.
    pub fn write(dir: &Path, name: &str, rows: usize, cols: usize, images: &[u8], labels: &[u8]) -> Dataset {
        let n = labels.len() as u32;
        let mut img = Vec::new();
        img.extend_from_slice(&0x0803u32.to_be_bytes());
        img.extend_from_slice(&n.to_be_bytes());
        img.extend_from_slice(&(rows as u32).to_be_bytes());
        img.extend_from_slice(&(cols as u32).to_be_bytes());
        img.extend_from_slice(images);
        let mut lab = Vec::new();
        lab.extend_from_slice(&0x0801u32.to_be_bytes());
        lab.extend_from_slice(&n.to_be_bytes());
        lab.extend_from_slice(labels);
        let (ip, lp) = (dir.join(format!("{name}-images")), dir.join(format!("{name}-labels")));
        std::fs::write(&ip, img).unwrap();
        std::fs::write(&lp, lab).unwrap();
        Dataset::open(&ip, &lp).unwrap()
    }

    /// `n` 4 × 4 images of 3 classes: class c lights up row c (and noise elsewhere).
    pub fn stripes(dir: &Path, name: &str, n: usize, seed: u64) -> Dataset {
        let mut images = vec![0u8; n * 16];
        let mut labels = vec![0u8; n];
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for i in 0..n {
            let c = (i % 3) as u8;
            labels[i] = c;
            for p in 0..16 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let noise = (x % 60) as u8;
                images[i * 16 + p] = if p / 4 == c as usize { 200 + noise / 2 } else { noise };
            }
        }
        write(dir, name, 4, 4, &images, &labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::Init;

    #[test]
    fn recording_matches_a_single_pass_and_any_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        let ds = testdata::stripes(dir.path(), "s", 70, 1);
        let m = Model::from_spec(
            "conv3k3p1,relu,pool2,flatten,fc8,relu,fc3",
            [1, 4, 4],
            3,
            Init::KaimingNormal,
            5,
        )
        .unwrap();
        let idx: Vec<u32> = (0..70).rev().collect();
        let data = Data { batch: 16, ..Data::new(&ds, &idx) };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let st1 = one.install(|| record(&m, &data, ConvDecision::Majority)).unwrap();
        let st2 = record(&m, &Data { batch: 7, ..data }, ConvDecision::Majority).unwrap();
        assert_eq!(st1, st2);
        st1.validate().unwrap();
        let above = record(&m, &Data { batch: 9, ..data }, ConvDecision::AboveMean).unwrap();
        let above1 = one.install(|| record(&m, &data, ConvDecision::AboveMean)).unwrap();
        assert_eq!(above, above1);
        assert_eq!(above.layers[0].on_counts, st1.layers[0].on_counts);
        assert!(above.layers[0].position_counts.is_empty());
        assert_eq!(st1.inputs(), 70);
        assert_eq!(st1.labels[0], ds.label(69) as u32);
        assert_eq!(st1.layers.len(), 2);
        assert_eq!((st1.layers[0].neurons, st1.layers[0].positions), (3, 16));
        // Compare with a direct pass over all 70 inputs.
        let mut images = vec![0.0; 70 * 16];
        let mut labels = vec![0; 70];
        write_batch(&ds, &idx, Normalize::default(), &mut images, &mut labels);
        let mut ws = Workspace::default();
        let mut on = [0u64; 8];
        let mut preds = Vec::new();
        m.forward_inspect(&images, 70, &mut ws, &mut |i, out, _| {
            if i == 5 {
                for (k, &v) in out.iter().enumerate() {
                    on[k % 8] += (v > 0.0) as u64;
                }
            }
            if i == 6 {
                preds.extend(argmax_rows(out, 3));
            }
        })
        .unwrap();
        assert_eq!(st1.layers[1].on_counts, on.to_vec());
        assert_eq!(st1.predictions, preds);
        let acc = accuracy(&m, &data).unwrap();
        assert!((acc - st1.accuracy()).abs() < 1e-12);
    }

    #[test]
    fn rejects_data_that_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let ds = testdata::stripes(dir.path(), "s", 10, 1);
        let m = Model::from_spec("flatten,fc4,relu,fc3", [1, 5, 5], 3, Init::KaimingNormal, 5).unwrap();
        let idx: Vec<u32> = (0..10).collect();
        assert!(record(&m, &Data::new(&ds, &idx), ConvDecision::Any).is_err());
        let m = Model::from_spec("flatten,fc4,relu,fc3", [1, 4, 4], 3, Init::KaimingNormal, 5).unwrap();
        let bad = [3u32, 10];
        assert!(accuracy(&m, &Data::new(&ds, &bad)).is_err());
    }
}
