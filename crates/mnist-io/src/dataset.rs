//! [`Dataset`], one images file and one labels file whose counts agree, and
//! [`Mnist`], the standard training and test pair found in a folder by name.

use std::path::{Path, PathBuf};

use crate::IdxError;
use crate::idx::{IdxFile, Kind};

/// An images file and a labels file of the same length, owning their maps.
///
/// Images are `u8` pixels, row-major, `rows × cols` each, one after the other;
/// labels are one `u8` per image. Both are borrowed views of the map of a raw file
/// (no pixel is copied), or of the decompressed bytes of a `.gz` file, or, after
/// [`Dataset::into_resident`], of a copy on huge pages.
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

    /// The same dataset with its bytes copied into memory backed, where the kernel
    /// allows it, by transparent huge pages (2 MiB instead of 4 KiB): for a set that is
    /// read in shuffled order, as a training set is. Costs one copy of the files
    /// (47 MB for MNIST's training images, a few tens of milliseconds) and that much
    /// memory; the file's own pages may then leave the page cache.
    ///
    /// Why: each image of a shuffled batch lies on its own 4 KiB page, and after a
    /// training step has swept the TLB, each of the batch's 64 pages costs a page walk
    /// that itself misses the caches (two-level, under virtualisation). On the 2-vCPU
    /// KVM Xeon of the README, writing a batch of 64 took a median of 200–370 µs from the
    /// map and 20–33 µs from huge pages, and training steps ran 13% (MLP-600) to 20%
    /// (LeNet-5) faster.
    ///
    /// # Errors
    /// [`IdxError::Io`] naming the file when the memory cannot be allocated or
    /// protected.
    pub fn into_resident(self) -> Result<Dataset, IdxError> {
        Ok(Dataset { images: self.images.into_resident()?, labels: self.labels.into_resident()?, ..self })
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
    /// `rows × cols`. Borrowed; nothing is copied.
    pub fn images(&self) -> &[u8] {
        self.images.data()
    }

    /// All labels: `len` bytes, borrowed.
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

    /// Both sets copied onto huge pages: see [`Dataset::into_resident`].
    ///
    /// # Errors
    /// As [`Dataset::into_resident`].
    pub fn into_resident(self) -> Result<Mnist, IdxError> {
        Ok(Mnist { train: self.train.into_resident()?, test: self.test.into_resident()? })
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
    use crate::testutil::{gzip, header, images_bytes, labels_bytes, write};
    use crate::{IMAGE_MAGIC, LABEL_MAGIC};

    /// Opens `images` and `labels` bytes written to a temporary folder.
    fn open_bytes(images: &[u8], labels: &[u8]) -> (tempfile::TempDir, Result<Dataset, IdxError>) {
        let dir = tempfile::tempdir().unwrap();
        let i = write(dir.path(), "images", images);
        let l = write(dir.path(), "labels", labels);
        let result = Dataset::open(&i, &l);
        (dir, result)
    }

    /// The error of opening bad bytes, checking that its message names the file.
    fn error_of(images: &[u8], labels: &[u8], bad_file: &str) -> IdxError {
        let (dir, result) = open_bytes(images, labels);
        let err = result.expect_err("the files are invalid");
        let message = err.to_string();
        let bad = dir.path().join(bad_file);
        assert!(message.contains(&*bad.to_string_lossy()), "{message:?} should name {bad:?}");
        err
    }

    #[test]
    fn opens_non_square_images_without_copying_them() {
        let (_dir, ds) = open_bytes(&images_bytes(3, 2, 5), &labels_bytes(&[0, 7, 3]));
        let ds = ds.unwrap();
        assert_eq!(ds.len(), 3);
        assert!(!ds.is_empty());
        assert_eq!(ds.image_dims(), (2, 5));
        assert_eq!(ds.image_len(), 10);
        assert_eq!(ds.num_classes(), 8);
        assert_eq!(ds.images().len(), 30);
        assert_eq!(ds.image(1), &[7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(ds.labels(), &[0, 7, 3]);
        assert_eq!(ds.label(2), 3);
        // A raw file is mapped, never copied to the heap.
        assert!(matches!(ds.images.bytes_kind(), "mapped"));
    }

    #[test]
    fn gz_files_give_the_same_dataset_as_raw_files() {
        let images = images_bytes(4, 3, 1);
        let labels = labels_bytes(&[1, 0, 255, 2]);
        let (_d1, raw) = open_bytes(&images, &labels);
        let (_d2, gz) = open_bytes(&gzip(&images), &gzip(&labels));
        let (raw, gz) = (raw.unwrap(), gz.unwrap());
        assert_eq!(raw.images(), gz.images());
        assert_eq!(raw.labels(), gz.labels());
        assert_eq!(gz.image_dims(), (3, 1));
        assert_eq!(gz.num_classes(), 256);
        assert!(matches!(gz.images.bytes_kind(), "heap"));
    }

    #[test]
    fn a_resident_copy_holds_the_same_bytes_whether_mapped_or_decompressed() {
        let images = images_bytes(5, 2, 3);
        let labels = labels_bytes(&[4, 0, 1, 9, 2]);
        for (images, labels) in [(images.clone(), labels.clone()), (gzip(&images), gzip(&labels))] {
            let (_dir, ds) = open_bytes(&images, &labels);
            let ds = ds.unwrap();
            let (want_images, want_labels) = (ds.images().to_vec(), ds.labels().to_vec());
            let resident = ds.into_resident().unwrap();
            assert!(matches!(resident.images.bytes_kind(), "resident"));
            assert!(matches!(resident.labels.bytes_kind(), "resident"));
            assert_eq!(resident.images(), want_images);
            assert_eq!(resident.labels(), want_labels);
            assert_eq!((resident.len(), resident.image_dims(), resident.num_classes()), (5, (2, 3), 10));
            // A second call keeps the copy it has.
            let ptr = resident.images().as_ptr();
            assert_eq!(resident.into_resident().unwrap().images().as_ptr(), ptr);
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let labels = write(dir.path(), "labels", &labels_bytes(&[1]));
        let absent = dir.path().join("no-such-file");
        let err = Dataset::open(&absent, &labels).unwrap_err();
        assert!(matches!(err, IdxError::Io { ref path, .. } if path == &absent), "{err}");
    }

    #[test]
    fn wrong_magic_is_refused() {
        let mut images = images_bytes(1, 2, 2);
        images[..4].copy_from_slice(&LABEL_MAGIC.to_be_bytes());
        let err = error_of(&images, &labels_bytes(&[0]), "images");
        assert!(matches!(err, IdxError::BadMagic { found: LABEL_MAGIC, expected: IMAGE_MAGIC, .. }), "{err}");
        // Labels with the images' magic: a swapped pair of files.
        let err = error_of(&images_bytes(1, 2, 2), &images_bytes(1, 2, 2), "labels");
        assert!(matches!(err, IdxError::BadMagic { found: IMAGE_MAGIC, expected: LABEL_MAGIC, .. }), "{err}");
    }

    #[test]
    fn short_or_empty_files_are_refused() {
        let labels = labels_bytes(&[0]);
        let err = error_of(&[], &labels, "images");
        assert!(matches!(err, IdxError::ShortHeader { actual: 0, needed: 16, .. }), "{err}");
        let err = error_of(&images_bytes(1, 2, 2)[..10], &labels, "images");
        assert!(matches!(err, IdxError::ShortHeader { actual: 10, needed: 16, .. }), "{err}");
        let err = error_of(&images_bytes(1, 2, 2), &labels[..5], "labels");
        assert!(matches!(err, IdxError::ShortHeader { actual: 5, needed: 8, .. }), "{err}");
    }

    #[test]
    fn truncated_data_is_refused() {
        let images = images_bytes(3, 4, 4);
        let err = error_of(&images[..images.len() - 1], &labels_bytes(&[0, 1, 2]), "images");
        assert!(
            matches!(err, IdxError::Truncated { expected: 64, actual: 63, ref dims, .. } if dims == &[3, 4, 4]),
            "{err}"
        );
        let labels = labels_bytes(&[0, 1, 2]);
        let err = error_of(&images, &labels[..10], "labels");
        assert!(matches!(err, IdxError::Truncated { expected: 11, actual: 10, .. }), "{err}");
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut images = images_bytes(2, 3, 3);
        images.push(0);
        let err = error_of(&images, &labels_bytes(&[0, 1]), "images");
        assert!(matches!(err, IdxError::TrailingBytes { expected: 34, .. }), "{err}");
        let err = error_of(&gzip(&images), &labels_bytes(&[0, 1]), "images");
        assert!(matches!(err, IdxError::TrailingBytes { expected: 34, .. }), "{err}");
    }

    #[test]
    fn header_dimensions_that_overflow_are_refused() {
        let images = header(IMAGE_MAGIC, &[u32::MAX, u32::MAX, u32::MAX]);
        let err = error_of(&images, &labels_bytes(&[0]), "images");
        assert!(matches!(err, IdxError::DimsOverflow { .. }), "{err}");
    }

    #[test]
    fn a_lying_gz_header_does_not_allocate_its_claim() {
        // 4 Gi images of 256 × 256 claimed, 10 pixels present: refused as truncated,
        // after decoding only what is there (an allocation of 2^48 bytes would abort).
        let mut images = header(IMAGE_MAGIC, &[u32::MAX, 256, 256]);
        images.extend_from_slice(&[1; 10]);
        let err = error_of(&gzip(&images), &labels_bytes(&[0]), "images");
        assert!(matches!(err, IdxError::Truncated { actual: 26, .. }), "{err}");
    }

    #[test]
    fn corrupt_or_truncated_gz_is_refused() {
        let gz = gzip(&images_bytes(20, 8, 8));
        let err = error_of(&gz[..gz.len() / 2], &labels_bytes(&[0; 20]), "images");
        assert!(matches!(err, IdxError::Gzip { .. }), "{err}");
        // A flipped byte in the 8-byte trailer: the CRC32 no longer matches.
        let mut bad = gz.clone();
        let at = bad.len() - 6;
        bad[at] ^= 0xff;
        let err = error_of(&bad, &labels_bytes(&[0; 20]), "images");
        assert!(matches!(err, IdxError::Gzip { .. }), "{err}");
    }

    #[test]
    fn empty_datasets_are_refused() {
        let err = error_of(&images_bytes(0, 28, 28), &labels_bytes(&[]), "images");
        assert!(matches!(err, IdxError::Empty { .. }), "{err}");
        let err = error_of(&images_bytes(2, 0, 28), &labels_bytes(&[0, 1]), "images");
        assert!(matches!(err, IdxError::EmptyImage { rows: 0, cols: 28, .. }), "{err}");
        let err = error_of(&images_bytes(1, 1, 1), &labels_bytes(&[]), "labels");
        assert!(matches!(err, IdxError::Empty { .. }), "{err}");
    }

    #[test]
    fn image_and_label_counts_must_agree() {
        let err = error_of(&images_bytes(3, 2, 2), &labels_bytes(&[0, 1]), "labels");
        assert!(matches!(err, IdxError::CountMismatch { image_count: 3, label_count: 2, .. }), "{err}");
        assert!(err.to_string().contains("images"), "{err}");
    }

    #[test]
    fn check_labels_names_the_first_label_out_of_range() {
        let (_dir, ds) = open_bytes(&images_bytes(4, 1, 1), &labels_bytes(&[0, 9, 10, 12]));
        let ds = ds.unwrap();
        assert!(ds.check_labels(13).is_ok());
        let err = ds.check_labels(10).unwrap_err();
        assert!(
            matches!(err, IdxError::LabelOutOfRange { index: 2, label: 10, classes: 10, ref path } if path == ds.labels_path()),
            "{err}"
        );
        assert!(err.to_string().contains(&*ds.labels_path().to_string_lossy()));
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn image_index_out_of_range_panics_like_slice_indexing() {
        let (_dir, ds) = open_bytes(&images_bytes(2, 1, 1), &labels_bytes(&[0, 1]));
        let _ = ds.unwrap().image(2);
    }

    #[test]
    fn mnist_open_finds_standard_dotted_and_gz_names() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "train-images.idx3-ubyte", &images_bytes(5, 3, 2));
        write(d, "train-labels-idx1-ubyte.gz", &gzip(&labels_bytes(&[0, 1, 2, 3, 4])));
        write(d, "t10k-images-idx3-ubyte", &images_bytes(2, 3, 2));
        write(d, "t10k-labels.idx1-ubyte.gz", &gzip(&labels_bytes(&[4, 0])));
        let mnist = Mnist::open(d).unwrap();
        assert_eq!((mnist.train.len(), mnist.test.len()), (5, 2));
        assert_eq!(mnist.train.image_dims(), (3, 2));
        assert_eq!(mnist.test.labels(), &[4, 0]);
        // With both present, the raw (mappable) file wins over the compressed one.
        write(d, "t10k-labels-idx1-ubyte", &labels_bytes(&[1, 1]));
        assert_eq!(Mnist::open(d).unwrap().test.labels(), &[1, 1]);
    }

    #[test]
    fn datasets_can_be_shared_between_threads() {
        // Training and recording read one dataset from several rayon threads.
        fn shareable<T: Send + Sync>() {}
        shareable::<Dataset>();
        shareable::<Mnist>();
        shareable::<IdxError>();
    }

    #[test]
    fn mnist_open_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "train-images-idx3-ubyte", &images_bytes(1, 1, 1));
        let err = Mnist::open(dir.path()).unwrap_err();
        assert!(matches!(err, IdxError::Missing { what: "training labels", .. }), "{err}");
        assert!(err.to_string().contains("train-labels-idx1-ubyte"), "{err}");
    }

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
