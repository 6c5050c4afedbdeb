//! Memory-mapped IDX datasets (MNIST and any other IDX image/label pair).
//!
//! Owns: parsing and validating IDX headers; mapping the files (memmap2) and
//! handing out borrowed `&[u8]` views of images and labels without copying; `.gz`
//! files (decompressed into memory, as a compressed file cannot be mapped);
//! seeded train/validation splits and shuffled mini-batches written as normalised
//! `f32` into a caller's buffer.
//!
//! Must not know about: tensors, layers, models, training or pruning; it depends on
//! no other crate of this workspace. `unsafe` is allowed here (the mmap) and in
//! `kernels` only.
