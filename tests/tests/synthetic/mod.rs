//! Synthetic MNIST-like IDX folders for the hardening tests (determinism, faults, CLI
//! errors), so that they run in CI without the real data: learnable (each class is a
//! bright bar at its own place, plus seeded noise), tiny, and written in the four
//! standard file names that `mnist_io::Mnist::open` looks for.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mnist_io::{IMAGE_MAGIC, LABEL_MAGIC, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};

/// The bytes of an images file of `n` images of `rows × cols` and its labels file;
/// image `i` has label `i % 10` and noise from a 64-bit LCG seeded by `seed`.
pub fn idx_pair(n: usize, rows: usize, cols: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut images = IMAGE_MAGIC.to_be_bytes().to_vec();
    for d in [n, rows, cols] {
        images.extend_from_slice(&(d as u32).to_be_bytes());
    }
    let mut labels = LABEL_MAGIC.to_be_bytes().to_vec();
    labels.extend_from_slice(&(n as u32).to_be_bytes());
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    for i in 0..n {
        let class = i % 10;
        labels.push(class as u8);
        for r in 0..rows {
            for c in 0..cols {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = (state >> 58) as u8; // 0..64
                let bar = (r * 10 / rows == class) || (c * 10 / cols == 9 - class);
                images.push(if bar { 190 + noise } else { noise });
            }
        }
    }
    (images, labels)
}

/// Writes a training set of `train` and a test set of `test` images of `rows × cols`
/// into `dir` under the standard MNIST names; returns `dir`.
pub fn write_mnist(dir: &Path, train: usize, test: usize, rows: usize, cols: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (n, seed, images_name, labels_name) in
        [(train, 1, TRAIN_IMAGES, TRAIN_LABELS), (test, 2, TEST_IMAGES, TEST_LABELS)]
    {
        let (images, labels) = idx_pair(n, rows, cols, seed);
        std::fs::write(dir.join(images_name), images).unwrap();
        std::fs::write(dir.join(labels_name), labels).unwrap();
    }
    dir.to_path_buf()
}
