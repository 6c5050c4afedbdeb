//! One IDX file, validated: its header (magic number and big-endian `u32`
//! dimensions) and its bytes, either memory-mapped (a raw file: no copy) or
//! decompressed into memory (a `.gz` file, which cannot be mapped), and on request
//! copied onto huge pages ([`IdxFile::into_resident`]).
//!
//! The IDX format: a 4-byte big-endian magic number `0x0000TTNN` (TT the element
//! type, `0x08` for `u8`; NN the number of dimensions), then NN big-endian `u32`
//! dimensions, then the elements in row-major order. Nothing follows them.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use memmap2::{Mmap, MmapMut};

use crate::IdxError;

/// Magic number of a `u8` array of 3 dimensions (images: count × rows × cols).
pub const IMAGE_MAGIC: u32 = 0x0000_0803;
/// Magic number of a `u8` vector (labels: count).
pub const LABEL_MAGIC: u32 = 0x0000_0801;
/// Length in bytes of the magic number and of each dimension.
const WORD_LEN: usize = 4;
/// The first two bytes of every gzip stream (RFC 1952); an IDX file starts with 0, 0.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The longest header we read: magic and 3 dimensions.
const MAX_HEADER_LEN: usize = WORD_LEN * 4;

/// Which of the two IDX layouts a file must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `u8` images: count × rows × cols.
    Images,
    /// `u8` labels: count.
    Labels,
}

impl Kind {
    fn magic(self) -> u32 {
        match self {
            Kind::Images => IMAGE_MAGIC,
            Kind::Labels => LABEL_MAGIC,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Images => "u8 images, 3 dimensions",
            Kind::Labels => "u8 labels, 1 dimension",
        }
    }

    fn ndims(self) -> usize {
        match self {
            Kind::Images => 3,
            Kind::Labels => 1,
        }
    }

    /// Header length in bytes: the magic number and the dimensions.
    fn header_len(self) -> usize {
        WORD_LEN * (1 + self.ndims())
    }
}

/// Where the bytes of a file live.
enum Bytes {
    /// A read-only map of the whole file: the pixels are never copied.
    Mapped(Mmap),
    /// The decompressed content of a `.gz` file.
    Heap(Vec<u8>),
    /// A copy in anonymous memory advised onto transparent huge pages, made read-only.
    Resident(Mmap),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Heap(vec) => vec,
            Bytes::Resident(map) => map,
        }
    }
}

/// A validated IDX file: its header matched its kind and its length matched its header.
pub(crate) struct IdxFile {
    path: PathBuf,
    bytes: Bytes,
    dims: Vec<u32>,
    header_len: usize,
}

impl IdxFile {
    /// Opens, maps (or decompresses) and validates `path` as a file of `kind`.
    pub(crate) fn open(path: &Path, kind: Kind) -> Result<IdxFile, IdxError> {
        let io = |source| IdxError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        if file_len == 0 {
            // An empty file cannot be mapped on every platform; it is too short anyway.
            return Err(IdxError::ShortHeader {
                path: path.to_path_buf(),
                actual: 0,
                needed: kind.header_len() as u64,
            });
        }
        // The map rests on one assumption no code can check (stated on `Dataset::open`):
        // no process modifies or truncates the file while it is mapped. The data files
        // are written once, atomically, by `cargo xtask fetch-mnist`, then only read.
        // SAFETY: a read-only map, only ever read as `u8` (every bit pattern is valid),
        // of a file that is not modified while mapped (see above).
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let bytes = if map.starts_with(&GZIP_MAGIC) {
            Bytes::Heap(decompress(path, &map, kind)?)
        } else {
            Bytes::Mapped(map)
        };
        let dims = check(path, bytes.as_slice(), kind)?;
        Ok(IdxFile { path: path.to_path_buf(), bytes, dims, header_len: kind.header_len() })
    }

    /// The file's path, as given to [`IdxFile::open`].
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The dimensions read from the header (count first).
    pub(crate) fn dims(&self) -> &[u32] {
        &self.dims
    }

    /// Where the bytes live, for tests: `"mapped"`, `"heap"` or `"resident"`.
    #[cfg(test)]
    pub(crate) fn bytes_kind(&self) -> &'static str {
        match self.bytes {
            Bytes::Mapped(_) => "mapped",
            Bytes::Heap(_) => "heap",
            Bytes::Resident(_) => "resident",
        }
    }

    /// The same file with its bytes copied into anonymous memory that the kernel is
    /// asked to back with transparent huge pages (2 MiB on x86-64); a file already
    /// resident is returned as it is.
    ///
    /// Why: a shuffled batch reads 64 images from 64 random 4 KiB pages of a 47 MB
    /// file, and once a training step has swept the TLB each of them costs a page walk
    /// that itself misses the caches (under virtualisation, a two-level walk). See
    /// [`crate::Dataset::into_resident`] for the measurement. Huge pages are a hint: where
    /// the kernel has them off or lacks them the copy lives on small pages, which is no
    /// slower than the map.
    pub(crate) fn into_resident(self) -> Result<IdxFile, IdxError> {
        if matches!(self.bytes, Bytes::Resident(_)) {
            return Ok(self);
        }
        let io = |source| IdxError::Io { path: self.path.clone(), source };
        let src = self.bytes.as_slice();
        let mut copy = MmapMut::map_anon(src.len()).map_err(io)?;
        // Advised before the first touch, so that the page faults of the copy below
        // allocate huge pages directly. A refusal (THP compiled out) changes nothing else.
        #[cfg(target_os = "linux")]
        let _ = copy.advise(memmap2::Advice::HugePage);
        copy.copy_from_slice(src);
        let bytes = Bytes::Resident(copy.make_read_only().map_err(io)?);
        Ok(IdxFile { bytes, ..self })
    }

    /// The elements, after the header: exactly the product of the dimensions.
    pub(crate) fn data(&self) -> &[u8] {
        &self.bytes.as_slice()[self.header_len..]
    }
}

/// Reads the header of `bytes` (a whole file) and checks that the file's length is
/// exactly what the dimensions announce. Returns the dimensions.
fn check(path: &Path, bytes: &[u8], kind: Kind) -> Result<Vec<u32>, IdxError> {
    let (dims, expected) = parse_header(path, bytes, kind)?;
    let actual = bytes.len() as u64;
    if actual < expected {
        return Err(IdxError::Truncated { path: path.to_path_buf(), dims, expected, actual });
    }
    if actual > expected {
        return Err(IdxError::TrailingBytes { path: path.to_path_buf(), dims, expected });
    }
    Ok(dims)
}

/// Parses the magic number and the dimensions at the start of `bytes` (which may be
/// only the header). Returns the dimensions and the total file length they imply.
fn parse_header(path: &Path, bytes: &[u8], kind: Kind) -> Result<(Vec<u32>, u64), IdxError> {
    let header_len = kind.header_len();
    let Some(header) = bytes.get(..header_len) else {
        return Err(IdxError::ShortHeader {
            path: path.to_path_buf(),
            actual: bytes.len() as u64,
            needed: header_len as u64,
        });
    };
    let mut words = header
        .chunks_exact(WORD_LEN)
        .map(|w| u32::from_be_bytes(w.try_into().expect("chunks_exact yields 4-byte chunks")));
    let magic = words.next().expect("the header holds the magic number");
    if magic != kind.magic() {
        return Err(IdxError::BadMagic {
            path: path.to_path_buf(),
            found: magic,
            expected: kind.magic(),
            what: kind.what(),
        });
    }
    let dims: Vec<u32> = words.collect();
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .and_then(|data| data.checked_add(header_len as u64))
        // The whole file must also be addressable, as a slice, on this platform.
        .filter(|&total| usize::try_from(total).is_ok());
    match expected {
        Some(total) => Ok((dims, total)),
        None => Err(IdxError::DimsOverflow { path: path.to_path_buf(), dims }),
    }
}

/// Decompresses a gzip stream holding an IDX file of `kind`.
///
/// The header is decompressed and validated first; the rest is read with a limit of
/// one byte more than the header announces, so that neither a lying header nor a
/// gzip bomb can make us allocate more than the announced size plus the data really
/// present. The buffer grows with the data actually decoded, never to a size only
/// the header claims.
fn decompress(path: &Path, compressed: &[u8], kind: Kind) -> Result<Vec<u8>, IdxError> {
    let gzip = |source| IdxError::Gzip { path: path.to_path_buf(), source };
    let mut decoder = MultiGzDecoder::new(compressed);
    let header_len = kind.header_len();
    let mut header = [0u8; MAX_HEADER_LEN];
    let mut filled = 0;
    while filled < header_len {
        match decoder.read(&mut header[filled..header_len]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(gzip(e)),
        }
    }
    let (_, expected) = parse_header(path, &header[..filled], kind)?;
    // One byte past the announced length is enough to tell "too long" from "exact".
    let limit = expected - header_len as u64 + 1;
    // Reserve what the compressed size makes plausible (MNIST compresses about 5:1),
    // capped by the header's claim: never the claim alone.
    let plausible = compressed.len().saturating_mul(8);
    let reserve = usize::try_from(expected).map_or(plausible, |e| e.min(plausible));
    let mut out = Vec::with_capacity(reserve);
    out.extend_from_slice(&header[..header_len]);
    decoder.take(limit).read_to_end(&mut out).map_err(gzip)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_follow_the_dimension_count() {
        assert_eq!(Kind::Images.header_len(), 16);
        assert_eq!(Kind::Labels.header_len(), 8);
        assert_eq!(MAX_HEADER_LEN, Kind::Images.header_len());
    }

    #[test]
    fn parse_header_reads_big_endian_dimensions() {
        let mut bytes = IMAGE_MAGIC.to_be_bytes().to_vec();
        for d in [2u32, 3, 0x0102_0304] {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        let (dims, total) = parse_header(Path::new("x"), &bytes, Kind::Images).unwrap();
        assert_eq!(dims, vec![2, 3, 0x0102_0304]);
        assert_eq!(total, 16 + 6 * 0x0102_0304);
    }

    #[test]
    fn parse_header_rejects_overflowing_dimensions() {
        let mut bytes = IMAGE_MAGIC.to_be_bytes().to_vec();
        for _ in 0..3 {
            bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        let err = parse_header(Path::new("big"), &bytes, Kind::Images).unwrap_err();
        assert!(matches!(err, IdxError::DimsOverflow { ref dims, .. } if dims == &[u32::MAX; 3]), "{err}");
    }
}
