//! Memory-mapped IDX datasets (MNIST and any other IDX image/label pair).
//!
//! Owns: parsing and validating IDX headers; mapping the files (memmap2) and
//! handing out borrowed `&[u8]` views of images and labels without copying; `.gz`
//! files (decompressed into memory, as a compressed file cannot be mapped); on
//! request, a copy on huge pages for sets read in shuffled order
//! ([`Dataset::into_resident`]);
//! seeded train/validation splits and shuffled mini-batches written as normalised
//! `f32` into a caller's buffer.
//!
//! Must not know about: tensors, layers, models, training or pruning; it depends on
//! no other crate of this workspace. `unsafe` is allowed here (the mmap) and in
//! `kernels` only.
//!
//! A training loop:
//! ```no_run
//! # use std::path::Path;
//! use mnist_io::{Mnist, Normalize, shuffled, split, write_batch};
//! // Shuffled batches read faster from a copy on huge pages than from the map.
//! let mnist = Mnist::open(Path::new("data/mnist"))?.into_resident()?;
//! let parts = split(mnist.train.len(), 10_000, 42);
//! let batch = 64;
//! let mut images = vec![0.0f32; batch * mnist.train.image_len()];
//! let mut labels = vec![0u32; batch];
//! for epoch in 0..2 {
//!     for chunk in shuffled(&parts.train, 42, epoch).chunks(batch) {
//!         write_batch(&mnist.train, chunk, Normalize::default(), &mut images, &mut labels);
//!         // Train on images[..chunk.len() * image_len] and labels[..chunk.len()].
//!     }
//! }
//! # Ok::<(), mnist_io::IdxError>(())
//! ```

mod batch;
mod dataset;
mod error;
mod idx;
#[cfg(test)]
mod testutil;

pub use batch::{Normalize, Split, shuffled, split, write_batch};
pub use dataset::{Dataset, Mnist, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
pub use error::IdxError;
pub use idx::{IMAGE_MAGIC, LABEL_MAGIC};
