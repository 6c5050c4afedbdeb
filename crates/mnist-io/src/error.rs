//! The one error type of this crate, [`IdxError`]: every variant names the file and
//! what is wrong with it, so that a message read in a CI log is enough to act on.

use std::path::PathBuf;

/// Everything that can be wrong with an IDX file or an (images, labels) pair.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// The file could not be opened, read or mapped.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is shorter than the fixed part of its header (magic and dimensions).
    #[error("{path}: truncated header: {actual} bytes, an IDX header of this kind needs {needed}")]
    ShortHeader {
        /// The file.
        path: PathBuf,
        /// The file's length in bytes (after decompression for a `.gz` file).
        actual: u64,
        /// The header's length in bytes.
        needed: u64,
    },
    /// The first four bytes are not the magic number expected for this kind of file.
    #[error("{path}: wrong magic number {found:#010x}, expected {expected:#010x} ({what})")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The big-endian `u32` found at offset 0.
        found: u32,
        /// The magic number of the expected kind of file.
        expected: u32,
        /// The expected kind, in words ("u8 images, 3 dimensions").
        what: &'static str,
    },
    /// The header's dimensions multiply to more bytes than any file can hold.
    #[error("{path}: header dimensions {dims:?} overflow the address space")]
    DimsOverflow {
        /// The file.
        path: PathBuf,
        /// The dimensions read from the header.
        dims: Vec<u32>,
    },
    /// The file ends before the data its header announces.
    #[error("{path}: truncated: header dimensions {dims:?} need {expected} bytes, the file has {actual}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The dimensions read from the header.
        dims: Vec<u32>,
        /// Header plus data length in bytes that the dimensions imply.
        expected: u64,
        /// The file's length in bytes (after decompression for a `.gz` file).
        actual: u64,
    },
    /// The file holds more bytes than its header announces.
    #[error(
        "{path}: header dimensions {dims:?} do not match the file length: they need {expected} bytes, \
         the file has more"
    )]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// The dimensions read from the header.
        dims: Vec<u32>,
        /// Header plus data length in bytes that the dimensions imply.
        expected: u64,
    },
    /// The file declares zero items.
    #[error("{path}: empty dataset: the header declares 0 items")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// An images file declares images of zero rows or zero columns.
    #[error("{path}: images of {rows} × {cols} pixels: both dimensions must be at least 1")]
    EmptyImage {
        /// The file.
        path: PathBuf,
        /// Rows (height) per image.
        rows: u32,
        /// Columns (width) per image.
        cols: u32,
    },
    /// The images and labels files hold different numbers of items.
    #[error("{images} holds {image_count} images but {labels} holds {label_count} labels")]
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// The labels file.
        labels: PathBuf,
        /// Number of images.
        image_count: u64,
        /// Number of labels.
        label_count: u64,
    },
    /// A label is not below the class count the caller expects.
    #[error("{path}: label {label} at index {index} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// The labels file.
        path: PathBuf,
        /// Index of the first offending label.
        index: usize,
        /// Its value.
        label: u8,
        /// The class count the caller asked for.
        classes: usize,
    },
    /// A `.gz` file is not a valid gzip stream (corrupt, truncated or a bad checksum).
    #[error("{path}: corrupt gzip stream: {source}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        #[source]
        source: std::io::Error,
    },
    /// None of the accepted names of one of the standard MNIST files exists in a folder.
    #[error("{dir}: no {what} file (looked for {tried:?})")]
    Missing {
        /// The folder searched.
        dir: PathBuf,
        /// Which file ("training images").
        what: &'static str,
        /// The names tried, in order.
        tried: Vec<String>,
    },
}
