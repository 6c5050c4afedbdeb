//! [`Dataset`], one images file and one labels file whose counts agree, and
//! [`Mnist`], the standard training and test pair found in a folder by name.

use std::path::{Path, PathBuf};

use crate::IdxError;
use crate::idx::{IdxFile, Kind};

/// An images file and a labels file of the same length, owning their maps.
///
/// Images are `u8` pixels, row-major, `rows × cols` each, one after the other;
/// labels are one `u8` per image. Both are borrowed views of the map of a raw file
/// (no pixel is copied), or of the decompressed bytes of a `.gz` file.
pub struct Dataset {
    images: IdxFile,
    labels: IdxFile,
    len: usize,
    rows: usize,
    cols: usize,
    num_classes: usize,
}

impl Dataset {
    /// Opens and validates an images file (magic `0x00000803`) and a labels file
    /// (magic `0x00000801`). Each may be raw (memory-mapped) or gzip-compressed
    /// (decompressed into memory); gzip is recognised by its magic bytes, not by name.
    ///
    /// # Errors
    /// An [`IdxError`] naming the file and the problem: unreadable, wrong magic,
    /// dimensions that do not match the file length, truncated, empty, images of
    /// zero rows or columns, or different image and label counts.
    ///
    /// # Safety
    /// This function is safe to call, but the maps rely on one assumption no code can
    /// check: the files are not modified or truncated (by this or another process)
    /// while the `Dataset` lives. Replace them atomically (write elsewhere, then
    /// rename), as `cargo xtask fetch-mnist` does.
    pub fn open(images: &Path, labels: &Path) -> Result<Dataset, IdxError> {
        let images = IdxFile::open(images, Kind::Images)?;
        let labels = IdxFile::open(labels, Kind::Labels)?;
        let &[count, rows, cols] = images.dims() else {
            unreachable!("an images file is validated to have 3 dimensions");
        };
        let &[label_count] = labels.dims() else {
            unreachable!("a labels file is validated to have 1 dimension");
        };
        if count == 0 {
            return Err(IdxError::Empty { path: images.path().to_path_buf() });
        }
        if rows == 0 || cols == 0 {
            return Err(IdxError::EmptyImage { path: images.path().to_path_buf(), rows, cols });
        }
        if label_count == 0 {
            return Err(IdxError::Empty { path: labels.path().to_path_buf() });
        }
        if count != label_count {
            return Err(IdxError::CountMismatch {
                images: images.path().to_path_buf(),
                labels: labels.path().to_path_buf(),
                image_count: u64::from(count),
                label_count: u64::from(label_count),
            });
        }
        let max_label = labels.data().iter().copied().max().expect("the labels are not empty");
        Ok(Dataset {
            len: count as usize,
            rows: rows as usize,
            cols: cols as usize,
            num_classes: usize::from(max_label) + 1,
            images,
            labels,
        })
    }

    /// Number of images (and labels).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: an empty dataset is refused by [`Dataset::open`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `(rows, cols)` = (height, width) of every image, in pixels, e.g. `(28, 28)`.
    pub fn image_dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Pixels per image: `rows · cols`.
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// Largest label plus one (between 1 and 256), computed once by [`Dataset::open`].
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// All images: `len · rows · cols` bytes, image after image, each row-major
    /// `rows × cols`. Borrowed from the map; nothing is copied.
    pub fn images(&self) -> &[u8] {
        self.images.data()
    }

    /// All labels: `len` bytes, borrowed from the map.
    pub fn labels(&self) -> &[u8] {
        self.labels.data()
    }

    /// Image `i`: `rows · cols` bytes, row-major.
    ///
    /// # Panics
    /// If `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(i < self.len, "image index {i} out of range for a dataset of {} images", self.len);
        let n = self.image_len();
        &self.images()[i * n..(i + 1) * n]
    }

    /// Label of image `i`.
    ///
    /// # Panics
    /// If `i >= len()`, like slice indexing.
    pub fn label(&self, i: usize) -> u8 {
        self.labels()[i]
    }

    /// The images file's path, as given to [`Dataset::open`].
    pub fn images_path(&self) -> &Path {
        self.images.path()
    }

    /// The labels file's path, as given to [`Dataset::open`].
    pub fn labels_path(&self) -> &Path {
        self.labels.path()
    }

    /// Checks that every label is below `classes`, for a caller whose model has
    /// `classes` outputs.
    ///
    /// # Errors
    /// [`IdxError::LabelOutOfRange`] naming the labels file and the first label that
    /// is not below `classes`.
    pub fn check_labels(&self, classes: usize) -> Result<(), IdxError> {
        match self.labels().iter().position(|&l| usize::from(l) >= classes) {
            None => Ok(()),
            Some(index) => Err(IdxError::LabelOutOfRange {
                path: self.labels_path().to_path_buf(),
                index,
                label: self.labels()[index],
                classes,
            }),
        }
    }
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("images", &self.images.path())
            .field("labels", &self.labels.path())
            .field("len", &self.len)
            .field("image_dims", &(self.rows, self.cols))
            .field("num_classes", &self.num_classes)
            .finish()
    }
}

/// The standard MNIST files, by their standard names without extension.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// See [`TRAIN_IMAGES`].
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// See [`TRAIN_IMAGES`].
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// See [`TRAIN_IMAGES`].
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The MNIST training set (60,000 images) and test set (10,000 images).
#[derive(Debug)]
pub struct Mnist {
    /// The training set: `train-images-idx3-ubyte` and `train-labels-idx1-ubyte`.
    pub train: Dataset,
    /// The test set: `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`.
    pub test: Dataset,
}

impl Mnist {
    /// Opens the four standard files in `dir`. Each is looked for under its standard
    /// name (`train-images-idx3-ubyte`), its dotted name (`train-images.idx3-ubyte`),
    /// then the same names with `.gz`; the first that exists is used, so a raw
    /// (mappable) file wins over a compressed one.
    ///
    /// # Errors
    /// [`IdxError::Missing`] if no name of a file exists, or any error of
    /// [`Dataset::open`].
    pub fn open(dir: &Path) -> Result<Mnist, IdxError> {
        let train = Dataset::open(
            &find(dir, TRAIN_IMAGES, "training images")?,
            &find(dir, TRAIN_LABELS, "training labels")?,
        )?;
        let test =
            Dataset::open(&find(dir, TEST_IMAGES, "test images")?, &find(dir, TEST_LABELS, "test labels")?)?;
        Ok(Mnist { train, test })
    }
}

/// The names under which a standard file may be found, in order of preference.
fn candidates(stem: &str) -> Vec<String> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    vec![stem.to_string(), dotted.clone(), format!("{stem}.gz"), format!("{dotted}.gz")]
}

fn find(dir: &Path, stem: &str, what: &'static str) -> Result<PathBuf, IdxError> {
    let tried = candidates(stem);
    match tried.iter().map(|name| dir.join(name)).find(|p| p.is_file()) {
        Some(path) => Ok(path),
        None => Err(IdxError::Missing { dir: dir.to_path_buf(), what, tried }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cover_standard_dotted_and_gz_names() {
        assert_eq!(
            candidates(TRAIN_IMAGES),
            [
                "train-images-idx3-ubyte",
                "train-images.idx3-ubyte",
                "train-images-idx3-ubyte.gz",
                "train-images.idx3-ubyte.gz"
            ]
        );
        assert_eq!(candidates(TEST_LABELS)[1], "t10k-labels.idx1-ubyte");
    }
}
