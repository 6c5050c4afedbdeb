//! The release xtask binary for the tests that drive the command line (faults, CLI
//! errors): built once per test process with `cargo build -p xtask --release` (a no-op
//! when up to date), honouring `CARGO_TARGET_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The release xtask binary, built (or found up to date) once per test process.
pub fn xtask() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = actprune_tests::project_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "-p", "xtask", "--release", "--quiet"])
            .status()
            .expect("cannot run cargo to build xtask");
        assert!(status.success(), "cargo build -p xtask --release failed");
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
        let target = if target.is_relative() { root.join(target) } else { target };
        let bin = target.join("release").join("xtask");
        assert!(bin.is_file(), "no xtask binary at {}", bin.display());
        bin
    })
}

/// `xtask train` arguments for one epoch of a tiny MLP (784-16-10) on the images in
/// `data`, saved to `out`: a model file to feed the commands under test.
pub fn train_tiny_mlp_args<'a>(data: &'a str, out: &'a str) -> [&'a str; 10] {
    ["train", "--model", "mlp:784-16-10", "--epochs", "1", "--json", "--data", data, "--out", out]
}
