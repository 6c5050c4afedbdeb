//! The real MNIST through mnist-io: well-known facts about the files, and proof that
//! opening a raw file copies no pixel (the images are a view into a map of the file).
//!
//! These tests need the four decompressed files (`cargo xtask test` fetches them and
//! sets `ACTPRUNE_MNIST_DIR`), so a plain `cargo test` skips them.

use actprune_tests::mnist_dir;
use mnist_io::{Dataset, Mnist, Normalize, TEST_IMAGES, TEST_LABELS};

#[test]
#[ignore = "needs MNIST: run with cargo xtask test"]
fn mnist_has_its_well_known_shape_and_labels() {
    let mnist = Mnist::open(&mnist_dir()).expect("the four MNIST files");
    assert_eq!(mnist.train.len(), 60_000);
    assert_eq!(mnist.test.len(), 10_000);
    for ds in [&mnist.train, &mnist.test] {
        assert_eq!(ds.image_dims(), (28, 28));
        assert_eq!(ds.image_len(), 784);
        assert_eq!(ds.num_classes(), 10);
        assert_eq!(ds.images().len(), ds.len() * 784);
        assert!(ds.check_labels(10).is_ok());
    }
    assert_eq!(&mnist.train.labels()[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    let mut counts = [0usize; 10];
    for &l in mnist.test.labels() {
        counts[usize::from(l)] += 1;
    }
    assert_eq!(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
}

#[test]
#[ignore = "needs MNIST: run with cargo xtask test"]
fn default_normalisation_is_the_training_sets_statistics() {
    let mnist = Mnist::open(&mnist_dir()).expect("the four MNIST files");
    let pixels = mnist.train.images();
    let n = pixels.len() as f64;
    let mean = pixels.iter().map(|&p| f64::from(p) / 255.0).sum::<f64>() / n;
    let var = pixels.iter().map(|&p| (f64::from(p) / 255.0 - mean).powi(2)).sum::<f64>() / n;
    let norm = Normalize::default();
    assert!((mean - f64::from(norm.mean)).abs() < 1e-4, "mean {mean}");
    assert!((var.sqrt() - f64::from(norm.std)).abs() < 1e-4, "std {}", var.sqrt());
}

/// The mappings of this process whose file is `path`: `(start, end, offset)`.
#[cfg(target_os = "linux")]
fn mappings_of(path: &std::path::Path) -> Vec<(usize, usize, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let path = path.canonicalize().unwrap();
    maps.lines()
        .filter_map(|line| {
            // "start-end perms offset dev inode   pathname"
            let fields: Vec<&str> = line.splitn(6, ' ').collect();
            let name = fields.get(5)?.trim_start();
            if std::path::Path::new(name) != path {
                return None;
            }
            let (start, end) = fields[0].split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            Some((start, end, u64::from_str_radix(fields[2], 16).ok()?))
        })
        .collect()
}

/// Anonymous resident memory of this process (heap and other private copies), bytes.
#[cfg(target_os = "linux")]
fn rss_anon() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).expect("RssAnon in /proc/self/status");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
#[ignore = "needs MNIST: run with cargo xtask test"]
#[cfg(target_os = "linux")]
fn opening_the_test_images_copies_no_pixel() {
    let dir = mnist_dir();
    let images_path = dir.join(TEST_IMAGES);
    assert!(images_path.is_file(), "the raw (mappable) file is expected in {}", dir.display());
    let anon_before = rss_anon();
    let ds = Dataset::open(&images_path, &dir.join(TEST_LABELS)).unwrap();
    // Touch every pixel: a copy would have to be resident somewhere.
    let sum: u64 = ds.images().iter().map(|&p| u64::from(p)).sum();
    assert!(sum > 0);
    let anon_after = rss_anon();

    // 1. The slice lies inside a mapping of that very file, 16 bytes (the IDX header)
    //    past the mapping's start at file offset 0.
    let images = ds.images();
    let (start, end) = (images.as_ptr() as usize, images.as_ptr() as usize + images.len());
    let maps = mappings_of(&images_path);
    let holder = maps.iter().find(|&&(s, e, _)| s <= start && end <= e);
    let &(map_start, _, offset) = holder
        .unwrap_or_else(|| panic!("images at {start:#x}..{end:#x} not in a mapping of the file: {maps:?}"));
    assert_eq!((start - map_start, offset), (16, 0));

    // 2. Reading all 7,840,000 pixels added no anonymous memory of that size: they
    //    were read from the page cache through the map. (Other tests of this binary run
    //    concurrently; they allocate far less than 7.8 MB of heap.)
    let grown = anon_after.saturating_sub(anon_before);
    assert!(grown < 2 << 20, "anonymous memory grew by {grown} bytes while reading a 7.8 MB file");
}
