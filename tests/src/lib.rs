//! Helpers shared by the end-to-end tests in `tests/tests/`: where the real MNIST
//! lives and where the workspace root is. The tests that need the real data are
//! `#[ignore]`d so that a plain `cargo test` stays offline; `cargo xtask test` fetches
//! the data and runs them.

use std::path::PathBuf;

/// The workspace root.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives one level below the workspace root")
        .to_path_buf()
}

/// The folder holding the four decompressed MNIST files: `ACTPRUNE_MNIST_DIR`, or
/// `data/mnist` under the workspace root.
pub fn mnist_dir() -> PathBuf {
    std::env::var_os("ACTPRUNE_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("data").join("mnist"))
}
