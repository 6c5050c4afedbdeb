//! `cargo xtask fetch-mnist`: download (or copy from an offline mirror) the four
//! MNIST files, verify their SHA-256 and store them decompressed in `data/mnist/`.

use std::path::{Path, PathBuf};

/// Options of `cargo xtask fetch-mnist`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to store the decompressed files.
    #[arg(long, default_value = "data/mnist")]
    pub dir: PathBuf,
}

/// Makes sure `dir` holds the four verified files, fetching what is missing.
pub fn ensure(dir: &Path) -> anyhow::Result<()> {
    let _ = dir;
    anyhow::bail!("fetch-mnist is not implemented yet")
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<()> {
    ensure(&args.dir)
}
