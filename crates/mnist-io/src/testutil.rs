//! Tiny synthetic IDX files for the unit tests: any dimensions, any bytes, raw or
//! gzip-compressed, written into a temporary folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::{IMAGE_MAGIC, LABEL_MAGIC};

/// An IDX header: `magic` then the `dims`, all big-endian `u32`.
pub(crate) fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes
}

/// A well-formed images file: `count` images of `rows × cols`, pixel `j` of image
/// `i` holding `(7 i + j) mod 256`.
pub(crate) fn images_bytes(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut bytes = header(IMAGE_MAGIC, &[count, rows, cols]);
    let n = (rows * cols) as usize;
    for i in 0..count as usize {
        bytes.extend((0..n).map(|j| ((7 * i + j) % 256) as u8));
    }
    bytes
}

/// A well-formed labels file.
pub(crate) fn labels_bytes(labels: &[u8]) -> Vec<u8> {
    let mut bytes = header(LABEL_MAGIC, &[labels.len() as u32]);
    bytes.extend_from_slice(labels);
    bytes
}

/// `bytes` gzip-compressed.
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Writes `bytes` to `dir/name` and returns the path.
pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}
