//! Mini-batching: the seeded train/validation [`split`], the seeded per-epoch order
//! [`shuffled`], and [`write_batch`], which writes images as normalised `f32` into
//! buffers the caller reuses.
//!
//! Randomness comes from ChaCha8 (`rand_chacha`), keyed by the caller's seed and a
//! per-use domain tag (so the split and the epoch orders are independent streams),
//! with the epoch as the ChaCha stream number. The shuffle and the bounded integers it
//! draws are written here rather than taken from `rand`, so that an order depends on
//! the seed alone, not on the version of a dependency.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Dataset;

/// Pixel normalisation: `x = (p / 255 − mean) / std` for a pixel `p` in `0..=255`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    /// Mean of the pixels scaled to `[0, 1]`.
    pub mean: f32,
    /// Standard deviation of the pixels scaled to `[0, 1]`.
    pub std: f32,
}

impl Default for Normalize {
    /// The MNIST training set's statistics: mean 0.1307, std 0.3081.
    fn default() -> Self {
        Normalize { mean: 0.1307, std: 0.3081 }
    }
}

impl Normalize {
    /// The normalised value of pixel `p`.
    pub fn apply(self, p: u8) -> f32 {
        (f32::from(p) / 255.0 - self.mean) / self.std
    }

    /// [`Normalize::apply`] for all 256 pixel values: a batch is then one table
    /// look-up per pixel, with bit-identical results.
    fn table(self) -> [f32; 256] {
        std::array::from_fn(|p| self.apply(p as u8))
    }
}

/// A partition of a dataset's indices into a training part and a held-out
/// validation part (which pruning decisions use, never the test set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Indices kept for training, ascending.
    pub train: Vec<u32>,
    /// Indices held out for validation, ascending.
    pub validation: Vec<u32>,
}

/// Domain tags that key independent ChaCha streams for the two uses of a seed.
const SPLIT_DOMAIN: u64 = u64::from_le_bytes(*b"split\0\0\0");
const SHUFFLE_DOMAIN: u64 = u64::from_le_bytes(*b"shuffle\0");

/// Splits `0..len` by a seeded permutation: its first `validation` entries are held
/// out, the rest are for training. Both parts are returned sorted, so that the order
/// of training comes from [`shuffled`] alone. A `validation` larger than `len` holds
/// out everything.
///
/// # Panics
/// If `len` exceeds `u32::MAX + 1` (indices are `u32`; an IDX count is a `u32`).
pub fn split(len: usize, validation: usize, seed: u64) -> Split {
    assert!(len <= 1 << 32, "split of {len} items: indices are u32");
    let mut order: Vec<u32> = (0..len).map(|i| i as u32).collect();
    fisher_yates(&mut order, &mut rng(seed, SPLIT_DOMAIN, 0));
    let held_out = validation.min(len);
    let mut validation = order[..held_out].to_vec();
    let mut train = order[held_out..].to_vec();
    validation.sort_unstable();
    train.sort_unstable();
    Split { train, validation }
}

/// The order of `indices` for epoch `epoch`: a permutation drawn from ChaCha8 keyed by
/// `seed`, with `epoch` as the stream number. The same `(seed, epoch)` gives the same
/// order on every run and machine; different epochs give independent orders.
pub fn shuffled(indices: &[u32], seed: u64, epoch: u64) -> Vec<u32> {
    let mut order = indices.to_vec();
    fisher_yates(&mut order, &mut rng(seed, SHUFFLE_DOMAIN, epoch));
    order
}

/// Writes the images `indices` of `ds` as normalised `f32` into `images` and their
/// labels into `labels`.
///
/// `images` receives `indices.len() · image_len` values, NCHW with C = 1 (image
/// after image, each row-major `rows × cols`); `labels` receives `indices.len()`
/// values. The caller reuses both buffers across batches: they may be longer than
/// needed (a full-size buffer for the last, partial batch), and the part past the
/// batch is left untouched.
///
/// # Panics
/// If a buffer is too short or an index is out of range for `ds`, like slice indexing.
pub fn write_batch(ds: &Dataset, indices: &[u32], norm: Normalize, images: &mut [f32], labels: &mut [u32]) {
    let n = indices.len();
    let image_len = ds.image_len();
    assert!(
        images.len() >= n * image_len,
        "image buffer of {} values, a batch of {n} images of {image_len} pixels needs {}",
        images.len(),
        n * image_len
    );
    assert!(labels.len() >= n, "label buffer of {} values, a batch of {n} needs {n}", labels.len());
    let table = norm.table();
    prefetch_images(ds, indices);
    for ((&index, dst), label) in
        indices.iter().zip(images.chunks_exact_mut(image_len)).zip(labels.iter_mut())
    {
        let index = index as usize;
        for (x, &p) in dst.iter_mut().zip(ds.image(index)) {
            *x = table[usize::from(p)];
        }
        *label = u32::from(ds.label(index));
    }
}

/// Asks the CPU to fetch every cache line of the batch's images before they are read.
///
/// The images of a shuffled batch are scattered over the file (47 MB for MNIST's
/// training set), so after a training step has swept the caches their lines come
/// from memory, and read one image after another the conversion waited on them a few
/// at a time. In a probe that evicts the caches between batches of 64, the median
/// fell from 60–170 µs to 30–40 µs with the lines requested first (the range is this
/// host's memory noise); 160 µs was ~10% of a two-thread MLP step. On a resident copy
/// (huge pages, no page walks) it still falls from ~53 µs to ~20 µs.
fn prefetch_images(ds: &Dataset, indices: &[u32]) {
    #[cfg(target_arch = "x86_64")]
    for &index in indices {
        for line in ds.image(index as usize).chunks(64) {
            // SAFETY: a prefetch never faults and does not change memory; the address
            // is inside the image anyway.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast())
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ds, indices);
}

/// ChaCha8 keyed by `(seed, domain)`, positioned at the start of stream `stream`.
fn rng(seed: u64, domain: u64, stream: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&domain.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream);
    rng
}

/// Shuffles `v` in place (Fisher–Yates, from the end), each swap partner drawn
/// uniformly by [`below`].
fn fisher_yates(v: &mut [u32], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// A uniform integer in `0..n` (`n ≥ 1`), by Lemire's multiply-and-reject method:
/// the high word of `x · n` for a uniform 64-bit `x`, rejecting the few `x` that
/// would bias the result.
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    debug_assert!(n >= 1);
    let mut m = u128::from(rng.next_u64()) * u128::from(n);
    if (m as u64) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u64) < threshold {
            m = u128::from(rng.next_u64()) * u128::from(n);
        }
    }
    (m >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{images_bytes, labels_bytes, write};

    fn dataset(dir: &std::path::Path, count: u32, rows: u32, cols: u32) -> Dataset {
        let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
        let i = write(dir, "images", &images_bytes(count, rows, cols));
        let l = write(dir, "labels", &labels_bytes(&labels));
        Dataset::open(&i, &l).unwrap()
    }

    #[test]
    fn split_is_a_seeded_partition() {
        let s = split(1000, 100, 5);
        assert_eq!((s.train.len(), s.validation.len()), (900, 100));
        let mut all: Vec<u32> = s.train.iter().chain(&s.validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<u32>>(), "train ∪ validation = all, disjoint");
        assert!(s.train.is_sorted() && s.validation.is_sorted());
        // Held out at random, not the last (or first) 100.
        assert!(s.validation.iter().any(|&i| i < 500) && s.validation.iter().any(|&i| i >= 500));
        assert_eq!(split(1000, 100, 5), s, "same seed, same split");
        assert_ne!(split(1000, 100, 6).validation, s.validation, "another seed, another split");
    }

    #[test]
    fn split_edge_cases() {
        assert_eq!(split(10, 0, 1).train.len(), 10);
        assert_eq!(split(10, 10, 1).validation, (0..10).collect::<Vec<u32>>());
        let all = split(10, 25, 1);
        assert_eq!((all.train.len(), all.validation.len()), (0, 10));
        assert_eq!(split(0, 3, 1), Split { train: vec![], validation: vec![] });
    }

    #[test]
    fn shuffled_is_a_seeded_permutation_per_epoch() {
        let indices: Vec<u32> = (100..400).collect();
        let e0 = shuffled(&indices, 9, 0);
        let mut sorted = e0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, indices, "a permutation of its input");
        assert_ne!(e0, indices, "not the identity");
        assert_eq!(shuffled(&indices, 9, 0), e0, "same seed and epoch, same order");
        assert_ne!(shuffled(&indices, 9, 1), e0, "another epoch, another order");
        assert_ne!(shuffled(&indices, 10, 0), e0, "another seed, another order");
        assert!(shuffled(&[], 9, 0).is_empty());
        assert_eq!(shuffled(&[4], 9, 3), [4]);
    }

    #[test]
    fn shuffled_orders_are_pinned() {
        // The exact orders are part of the reproducibility contract: a change here
        // (of the generator, the key derivation or the shuffle) changes every run.
        let indices: Vec<u32> = (0..10).collect();
        assert_eq!(shuffled(&indices, 0, 0), [2, 5, 9, 3, 8, 6, 4, 1, 0, 7]);
        assert_eq!(shuffled(&indices, 42, 3), [4, 1, 0, 9, 2, 8, 7, 5, 3, 6]);
        assert_eq!(split(10, 3, 42).validation, [1, 5, 9]);
    }

    #[test]
    fn write_batch_normalises_the_chosen_images() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path(), 6, 3, 2);
        let norm = Normalize { mean: 0.5, std: 2.0 };
        let mut images = vec![f32::NAN; 4 * 6];
        let mut labels = vec![u32::MAX; 4];
        write_batch(&ds, &[5, 0, 3], norm, &mut images, &mut labels);
        for (k, &i) in [5usize, 0, 3].iter().enumerate() {
            for (j, &p) in ds.image(i).iter().enumerate() {
                let want = (f32::from(p) / 255.0 - 0.5) / 2.0;
                assert_eq!(images[k * 6 + j].to_bits(), want.to_bits(), "image {i} pixel {j}");
            }
            assert_eq!(labels[k], u32::from(ds.label(i)));
        }
        // The part of the buffers past this (partial) batch is left alone.
        assert!(images[18..].iter().all(|x| x.is_nan()));
        assert_eq!(labels[3], u32::MAX);
    }

    #[test]
    fn an_epoch_of_batches_covers_every_index_once_and_keeps_the_last_partial_batch() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path(), 23, 2, 2);
        let parts = split(ds.len(), 5, 1);
        let batch = 4;
        let mut images = vec![0.0; batch * ds.image_len()];
        let mut labels = vec![0; batch];
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        for chunk in shuffled(&parts.train, 1, 0).chunks(batch) {
            write_batch(&ds, chunk, Normalize::default(), &mut images, &mut labels);
            sizes.push(chunk.len());
            for (k, &i) in chunk.iter().enumerate() {
                // Pixel 0 of image i is 7 i mod 256 (see testutil::images_bytes).
                assert_eq!(images[k * 4], Normalize::default().apply((7 * i % 256) as u8));
                assert_eq!(labels[k], i % 10);
            }
            seen.extend_from_slice(chunk);
        }
        assert_eq!(sizes, [4, 4, 4, 4, 2], "18 training images in batches of 4");
        seen.sort_unstable();
        assert_eq!(seen, parts.train);
    }

    #[test]
    #[should_panic(expected = "image buffer")]
    fn write_batch_panics_on_a_short_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path(), 3, 2, 2);
        write_batch(&ds, &[0, 1], Normalize::default(), &mut [0.0; 7], &mut [0; 2]);
    }

    #[test]
    fn below_stays_in_range_and_hits_every_value() {
        let mut rng = rng(7, SHUFFLE_DOMAIN, 0);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[below(&mut rng, 7) as usize] += 1;
        }
        // Each value expects 1000 draws; 800 is more than 6 standard deviations away.
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        assert_eq!(below(&mut rng, 1), 0);
    }

    #[test]
    fn streams_of_split_and_shuffle_differ() {
        let mut a = rng(1, SPLIT_DOMAIN, 0);
        let mut b = rng(1, SHUFFLE_DOMAIN, 0);
        let mut c = rng(1, SHUFFLE_DOMAIN, 1);
        let (x, y, z) = (a.next_u64(), b.next_u64(), c.next_u64());
        assert!(x != y && y != z && x != z);
    }

    #[test]
    fn normalize_default_maps_black_and_white() {
        let n = Normalize::default();
        assert!((n.apply(0) - (-0.1307 / 0.3081)).abs() < 1e-6);
        assert!((n.apply(255) - ((1.0 - 0.1307) / 0.3081)).abs() < 1e-6);
        let table = n.table();
        assert!((0..=255u8).all(|p| table[usize::from(p)].to_bits() == n.apply(p).to_bits()));
    }
}
