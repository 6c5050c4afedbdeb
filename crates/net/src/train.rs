//! The training loop (SGD over shuffled mini-batches, evaluation after each epoch) and
//! evaluation (accuracy, mean loss, confusion matrix, throughput).
//!
//! Batches come from `mnist_io`: `shuffled(indices, seed, epoch)` gives each epoch's
//! order, `write_batch` writes normalised `f32` NCHW images into one reused buffer; the
//! last partial batch is kept. The [`Workspace`], the batch buffers and the momentum
//! state are sized once; a batch allocates only the parallel regions' short lists of
//! parts.

use std::time::Instant;

use mnist_io::{Dataset, Normalize, shuffled, write_batch};

use crate::layers::linear;
use crate::loss::softmax_cross_entropy;
use crate::sgd::{Schedule, Sgd};
use crate::{Layer, Model, NetError, Workspace};

/// How to train.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training indices.
    pub epochs: usize,
    /// Stop after this many batches in total (a fractional-epoch budget); `None` = all.
    pub max_batches: Option<usize>,
    /// Images per batch (default 64).
    pub batch: usize,
    /// Base learning rate (the schedule scales it per epoch).
    pub lr: f32,
    /// SGD momentum `μ` (0 = plain SGD).
    pub momentum: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Learning rate per epoch.
    pub schedule: Schedule,
    /// Seed of the per-epoch shuffles.
    pub seed: u64,
    /// Show a progress bar (loss, accuracy, images/s) on stderr.
    pub progress: bool,
}

impl Default for TrainConfig {
    /// 10 epochs of batch 64, lr 0.01, momentum 0, constant schedule, seed 0, no progress bar.
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            max_batches: None,
            batch: 64,
            lr: 0.01,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            schedule: Schedule::Constant,
            seed: 0,
            progress: false,
        }
    }
}

/// Accuracy, loss and throughput of a model on a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Fraction of images whose argmax is the label, in [0, 1].
    pub accuracy: f64,
    /// Mean softmax cross-entropy (nats).
    pub loss: f64,
    /// `classes × classes`, row-major: `confusion[true · classes + predicted]` counts images.
    pub confusion: Vec<u64>,
    /// Images evaluated.
    pub images: usize,
    /// Wall-clock seconds of the evaluation.
    pub seconds: f64,
    /// `images / seconds`.
    pub images_per_second: f64,
}

/// What one epoch of training did.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// Epoch number, 1-based.
    pub epoch: usize,
    /// Learning rate used in this epoch.
    pub lr: f32,
    /// Batches trained in this epoch.
    pub batches: usize,
    /// Mean training loss over the epoch's images (as the weights moved).
    pub train_loss: f32,
    /// Training accuracy over the epoch's images, in [0, 1].
    pub train_accuracy: f32,
    /// Evaluation on the test set after the epoch, when one was given.
    pub test: Option<Evaluation>,
    /// Wall-clock seconds of the epoch's training (evaluation excluded).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

/// Everything `train` did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainReport {
    /// One entry per epoch trained (a budget may end the last one early).
    pub epochs: Vec<EpochStats>,
    /// Batches trained in total.
    pub batches: usize,
}

/// Called by [`train`] after each epoch (e.g. to keep a snapshot for rewinding).
pub trait TrainObserver {
    /// The epoch is done and evaluated; `model` holds its weights.
    fn on_epoch_end(&mut self, model: &Model, stats: &EpochStats) {
        let _ = (model, stats);
    }
}

/// The observer that observes nothing.
impl TrainObserver for () {}

fn check_dataset(model: &Model, ds: &Dataset, indices: Option<&[u32]>) -> Result<(), NetError> {
    let (rows, cols) = ds.image_dims();
    if model.input_shape() != [1, rows, cols] {
        return Err(NetError::Config(format!(
            "the model takes {:?} images, {} holds [1, {rows}, {cols}]",
            model.input_shape(),
            ds.images_path().display()
        )));
    }
    if ds.num_classes() > model.num_classes() {
        return Err(NetError::Config(format!(
            "{} has {} classes, the model outputs {}",
            ds.labels_path().display(),
            ds.num_classes(),
            model.num_classes()
        )));
    }
    if let Some(&bad) = indices.and_then(|ix| ix.iter().find(|&&i| i as usize >= ds.len())) {
        return Err(NetError::Config(format!("index {bad} is past the {} images", ds.len())));
    }
    Ok(())
}

/// Trains `model` in place on `train[indices]` with SGD, evaluating on `test` after each
/// epoch when given, and calling `observer` after each epoch.
///
/// The batches gather images in shuffled order: give a `train` set made resident
/// ([`Dataset::into_resident`]) rather than a plain map, or each batch waits on page
/// walks (−13% step time for the MLP-600, −20% for LeNet-5, on the README's machine).
///
/// # Errors
/// [`NetError::Config`] for a bad configuration or a dataset that does not fit the
/// model; [`NetError::Diverged`] when a batch's loss is NaN or infinite (naming the
/// epoch, the batch and the learning rate).
pub fn train(
    model: &mut Model,
    train: &Dataset,
    indices: &[u32],
    test: Option<&Dataset>,
    cfg: &TrainConfig,
    observer: &mut dyn TrainObserver,
) -> Result<TrainReport, NetError> {
    if cfg.batch == 0 {
        return Err(NetError::Config("batch must be at least 1".into()));
    }
    if !(cfg.lr.is_finite() && cfg.lr >= 0.0 && cfg.momentum.is_finite() && cfg.weight_decay.is_finite()) {
        return Err(NetError::Config(format!(
            "lr {}, momentum {} and weight decay {} must be finite (lr ≥ 0)",
            cfg.lr, cfg.momentum, cfg.weight_decay
        )));
    }
    check_dataset(model, train, Some(indices))?;
    if let Some(t) = test {
        check_dataset(model, t, None)?;
    }
    let image_len = train.image_len();
    let (norm, offset) = training_input(model, Normalize::default());
    let mut images = vec![0.0f32; cfg.batch * image_len];
    let mut labels = vec![0u32; cfg.batch];
    let mut ws = Workspace::default();
    ws.fold_input_offset(offset);
    let mut sgd = Sgd::new(cfg.lr, cfg.momentum, cfg.weight_decay, cfg.nesterov);
    let mut report = TrainReport::default();
    let budget = cfg.max_batches.unwrap_or(usize::MAX);
    let per_epoch = indices.len().div_ceil(cfg.batch);
    for epoch in 0..cfg.epochs {
        if report.batches >= budget {
            break;
        }
        let lr = cfg.schedule.lr(cfg.lr, epoch, cfg.epochs);
        sgd.lr = lr;
        let order = shuffled(indices, cfg.seed, epoch as u64);
        let bar = progress_bar(cfg.progress, per_epoch.min(budget - report.batches), epoch + 1, cfg.epochs);
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen, mut batches) = (0.0f64, 0usize, 0usize, 0usize);
        for (b, chunk) in order.chunks(cfg.batch).enumerate() {
            if report.batches >= budget {
                break;
            }
            let n = chunk.len();
            write_batch_on_team(train, chunk, norm, &mut images, &mut labels);
            let (loss, ok) =
                sgd.forward_backward_step(model, &images[..n * image_len], &labels[..n], n, &mut ws)?;
            if !loss.is_finite() {
                return Err(NetError::Diverged { epoch: epoch + 1, batch: b, lr, loss });
            }
            loss_sum += f64::from(loss) * n as f64;
            correct += ok;
            seen += n;
            batches += 1;
            report.batches += 1;
            if let Some(bar) = &bar
                && (batches % 16 == 0 || batches == per_epoch)
            {
                bar.set_position(batches as u64);
                let secs = start.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.4} acc {:.2}% {:.0} img/s",
                    loss_sum / seen as f64,
                    100.0 * correct as f64 / seen as f64,
                    seen as f64 / secs.max(1e-9)
                ));
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        if let Some(bar) = bar {
            bar.finish();
        }
        let test_eval = match test {
            Some(t) => Some(evaluate(model, t, None, 1000)?),
            None => None,
        };
        let stats = EpochStats {
            epoch: epoch + 1,
            lr,
            batches,
            train_loss: (loss_sum / seen.max(1) as f64) as f32,
            train_accuracy: (correct as f64 / seen.max(1) as f64) as f32,
            test: test_eval,
            seconds,
            images_per_second: seen as f64 / seconds.max(1e-9),
        };
        observer.on_epoch_end(model, &stats);
        report.epochs.push(stats);
    }
    Ok(report)
}

/// [`write_batch`] with the batch cut between the team's threads: on one thread,
/// loading 64 shuffled images (their lines come from memory after a step has swept
/// the caches) is ~30–50 µs during which the helper only spins.
fn write_batch_on_team(ds: &Dataset, chunk: &[u32], norm: Normalize, images: &mut [f32], labels: &mut [u32]) {
    let image_len = ds.image_len();
    let per = chunk.len().div_ceil(kernels::team::threads()).max(1);
    let parts: Vec<_> =
        chunk.chunks(per).zip(images.chunks_mut(per * image_len)).zip(labels.chunks_mut(per)).collect();
    kernels::team::for_each(parts, |_, ((indices, images), labels)| {
        write_batch(ds, indices, norm, images, labels)
    });
}

fn progress_bar(show: bool, len: usize, epoch: usize, epochs: usize) -> Option<indicatif::ProgressBar> {
    if !show {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} batches  {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("{epoch}/{epochs}"));
    Some(bar)
}

/// Evaluates `model` on `ds[indices]` (all images when `None`) in batches of `batch`.
///
/// When the first layer with parameters is a Linear (after any Flatten), the inputs'
/// centring is folded into its bias (see [`fold_centring`]): the images are written
/// scaled but not centred, so their background pixels stay 0 and the first GEMM skips
/// them. The logits equal those of the plain forward pass to rounding (~1e-6 relative).
///
/// # Errors
/// [`NetError::Config`] when the dataset does not fit the model, an index is out of
/// range or `batch` is 0.
pub fn evaluate(
    model: &Model,
    ds: &Dataset,
    indices: Option<&[u32]>,
    batch: usize,
) -> Result<Evaluation, NetError> {
    match fold_centring(model, Normalize::default()) {
        Some((folded, scaled)) => evaluate_with(&folded, scaled, ds, indices, batch),
        None => evaluate_with(model, Normalize::default(), ds, indices, batch),
    }
}

/// For a model whose first layer with parameters is a Linear fed through Flattens only
/// ([`Model::offset_layer`]), the same model with `norm`'s centring moved into that
/// layer's bias, and the scale-only normalisation to feed it.
///
/// With `x = s + c`, where `s = (p/255)/σ` is the scaled pixel and `c = −μ/σ`, the
/// layer computes `W·x + b = W·s + (b + c·Σᵢ W[:, i])`. The background pixels (81% of
/// MNIST's) are then exact zeros, which the GEMM skips wherever all 8 images of a
/// micro-panel share one. The bias is the one a training pass folds in
/// ([`training_input`]), bit for bit.
pub fn fold_centring(model: &Model, norm: Normalize) -> Option<(Model, Normalize)> {
    let first = model.offset_layer()?;
    let (scaled, centre) = centring(norm);
    let mut folded = model.clone();
    if let Layer::Linear(l) = &mut folded.layers_mut()[first] {
        let mut bias = vec![0.0; l.out_features];
        linear::offset_bias(l, centre, &mut bias);
        l.bias = bias;
    }
    Some((folded, scaled))
}

/// How a training pass should feed `model` images normalised by `norm`: the
/// normalisation to write its batches with, and the offset for
/// [`Workspace::fold_input_offset`].
///
/// For a model with a [`Model::offset_layer`] (an MLP), the batches are only scaled and
/// the centring `−mean/std` is folded into the first layer, as [`fold_centring`] does for
/// evaluation: the same training up to rounding, and the first layer's forward and
/// weight-gradient GEMMs skip the multiply-adds of background pixels (on MNIST, 784 →
/// 600 forward −30% and weight gradient −10% at 1 thread, the row sums included).
/// Other models (a first Conv2d, whose zero padding is not centred) get `norm` and 0.
pub fn training_input(model: &Model, norm: Normalize) -> (Normalize, f32) {
    match model.offset_layer() {
        Some(_) => centring(norm),
        None => (norm, 0.0),
    }
}

/// `norm` without its centring, and the centring as an offset: `(p/255 − μ)/σ` is
/// `(p/255)/σ + (−μ/σ)`.
fn centring(norm: Normalize) -> (Normalize, f32) {
    (Normalize { mean: 0.0, std: norm.std }, -norm.mean / norm.std)
}

/// [`evaluate`] with images normalised by `norm` and no folding.
fn evaluate_with(
    model: &Model,
    norm: Normalize,
    ds: &Dataset,
    indices: Option<&[u32]>,
    batch: usize,
) -> Result<Evaluation, NetError> {
    if batch == 0 {
        return Err(NetError::Config("batch must be at least 1".into()));
    }
    check_dataset(model, ds, indices)?;
    let all: Vec<u32>;
    let indices = match indices {
        Some(ix) => ix,
        None => {
            all = (0..ds.len() as u32).collect();
            &all
        }
    };
    let start = Instant::now();
    let classes = model.num_classes();
    let image_len = ds.image_len();
    // Batches run in parallel, each thread with one set of buffers; the per-batch sums
    // are combined in batch order, so the figures do not depend on the thread count.
    let per_batch =
        kernels::team::map_init(indices.chunks(batch).collect(), ReusedBuffers::take, |bufs, _, chunk| {
            let Buffers { ws, images, labels } = &mut bufs.0;
            let n = chunk.len();
            images.resize(batch * image_len, 0.0);
            labels.resize(batch, 0);
            write_batch(ds, chunk, norm, images, labels);
            let logits = model.forward(&images[..n * image_len], n, ws)?;
            let (loss, ok) = softmax_cross_entropy(None, logits, &labels[..n], classes);
            let mut confusion = vec![0u64; classes * classes];
            for (row, &label) in logits.chunks_exact(classes).zip(&labels[..n]) {
                confusion[label as usize * classes + argmax(row)] += 1;
            }
            Ok((f64::from(loss) * n as f64, ok, confusion))
        })
        .into_iter()
        .collect::<Result<Vec<_>, NetError>>()?;
    let mut confusion = vec![0u64; classes * classes];
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    for (l, ok, c) in per_batch {
        loss_sum += l;
        correct += ok;
        for (a, b) in confusion.iter_mut().zip(c) {
            *a += b;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let images = indices.len();
    Ok(Evaluation {
        accuracy: correct as f64 / images.max(1) as f64,
        loss: loss_sum / images.max(1) as f64,
        confusion,
        images,
        seconds,
        images_per_second: images as f64 / seconds.max(1e-9),
    })
}

/// The buffers of one evaluation thread: a workspace and one batch of images and labels.
#[derive(Default)]
struct Buffers {
    ws: Workspace,
    images: Vec<f32>,
    labels: Vec<u32>,
}

thread_local! {
    /// This thread's evaluation buffers, kept between calls: a LeNet-5 workspace at
    /// batch 1000 is ~40 MB, and allocating it afresh for every evaluation cost 15–30%
    /// of a 10,000-image evaluation in page faults and zeroing.
    static EVAL_BUFFERS: std::cell::Cell<Option<Buffers>> = const { std::cell::Cell::new(None) };
}

/// This thread's [`EVAL_BUFFERS`] (or new ones), put back when dropped.
struct ReusedBuffers(Buffers);

impl ReusedBuffers {
    fn take() -> Self {
        Self(EVAL_BUFFERS.take().unwrap_or_default())
    }
}

impl Drop for ReusedBuffers {
    fn drop(&mut self) {
        EVAL_BUFFERS.set(Some(std::mem::take(&mut self.0)));
    }
}

/// Index of the first maximum (the same rule as the loss's accuracy count).
fn argmax(row: &[f32]) -> usize {
    let (mut best, mut arg) = (f32::NEG_INFINITY, 0);
    for (k, &v) in row.iter().enumerate() {
        if v > best {
            best = v;
            arg = k;
        }
    }
    arg
}
