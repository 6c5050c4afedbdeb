//! `cargo xtask fetch-mnist`: download (or copy from an offline mirror) the four
//! MNIST files, verify the SHA-256 of each decompressed file against `data/SHA256SUMS`
//! and store them decompressed in `data/mnist/`, where mnist-io maps them.
//!
//! Idempotent: a file already present with the right hash is not fetched again.
//! Atomic: a file appears under its name only once complete and verified. On failure
//! the error names the file, the expected hash and what each place tried gave.
//!
//! The pieces are parameters ([`Plan`]: manifest, source, destination) so that the
//! tests can point the fetcher at servers and folders of their own.

mod manifest;
mod source;
mod store;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

pub use manifest::Manifest;
pub use source::{PUBLIC_MIRRORS, Source};

/// Environment variable naming an offline mirror (a folder of `.gz` or raw files), or
/// an HTTP mirror to try first if it starts with `http://` or `https://`.
pub const MIRROR_ENV: &str = "MNIST_MIRROR";

/// Options of `cargo xtask fetch-mnist`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to store the decompressed files [default: data/mnist under the project root].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A mirror to try before the public ones: a URL under which the `.gz` files are.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Take the files from this folder of `.gz` or raw files (an offline mirror)
    /// instead of downloading them. Without it, `MNIST_MIRROR=DIR` does the same.
    #[arg(long, value_name = "DIR", conflicts_with = "mirror")]
    pub from: Option<PathBuf>,
}

/// What to fetch, from where, to where.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The files and their hashes.
    pub manifest: Manifest,
    /// Where to take them from.
    pub source: Source,
    /// The folder to store them in (created if missing).
    pub dest: PathBuf,
}

/// What a run did, file by file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Files that were already present with the right hash (nothing was done).
    pub present: Vec<String>,
    /// Files fetched, verified and written.
    pub fetched: Vec<String>,
}

/// Makes sure `dir` holds the four verified files, fetching only what is missing or
/// wrong, from `MNIST_MIRROR` if it is set, else from the public mirrors.
pub fn ensure(dir: &Path) -> anyhow::Result<()> {
    let source = source_for(None, None, std::env::var_os(MIRROR_ENV));
    fetch(&Plan { manifest: Manifest::standard(), source, dest: dir.to_path_buf() })?;
    Ok(())
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let dest = args.dir.clone().unwrap_or_else(|| crate::project_root().join("data").join("mnist"));
    let source = source_for(args.from.clone(), args.mirror.clone(), std::env::var_os(MIRROR_ENV));
    let outcome = fetch(&Plan { manifest: Manifest::standard(), source, dest: dest.clone() })?;
    eprintln!(
        "fetch-mnist: {} fetched, {} already present; all verified in {}",
        outcome.fetched.len(),
        outcome.present.len(),
        dest.display()
    );
    Ok(())
}

/// The source, by precedence: `--from DIR`; `--mirror URL` before the public
/// mirrors; the environment's `MNIST_MIRROR` (a folder, or a URL put first); the
/// public mirrors.
pub fn source_for(from: Option<PathBuf>, mirror: Option<String>, env: Option<OsString>) -> Source {
    let public = || PUBLIC_MIRRORS.iter().map(|m| m.to_string());
    if let Some(dir) = from {
        return Source::Folder(dir);
    }
    let first = match (mirror, env) {
        (Some(url), _) => Some(url),
        (None, Some(env)) if !env.is_empty() => {
            let text = env.to_string_lossy();
            if text.starts_with("http://") || text.starts_with("https://") {
                Some(text.into_owned())
            } else {
                return Source::Folder(PathBuf::from(env));
            }
        }
        _ => None,
    };
    Source::Mirrors(first.into_iter().chain(public()).collect())
}

/// Fetches every file of the plan's manifest that is not already in `dest` with the
/// right hash. Stops at the first file that no origin gives correctly; files fetched
/// before it stay (they are verified).
pub fn fetch(plan: &Plan) -> anyhow::Result<Outcome> {
    let created = !plan.dest.exists();
    std::fs::create_dir_all(&plan.dest).with_context(|| format!("cannot create {}", plan.dest.display()))?;
    let result = fetch_into(plan);
    if result.is_err() && created {
        // Leave no empty folder behind that looks like a dataset; `remove_dir` only
        // removes it when empty, so files already verified stay.
        let _ = std::fs::remove_dir(&plan.dest);
    }
    result
}

fn fetch_into(plan: &Plan) -> anyhow::Result<Outcome> {
    let agent = source::agent();
    let mut outcome = Outcome::default();
    for entry in &plan.manifest.entries {
        let target = plan.dest.join(&entry.name);
        if target.exists() {
            let actual =
                store::sha256_file(&target).with_context(|| format!("cannot read {}", target.display()))?;
            if actual == entry.sha256 {
                outcome.present.push(entry.name.clone());
                continue;
            }
            eprintln!(
                "fetch-mnist: {} has SHA-256 {actual}, expected {}: fetching it again",
                target.display(),
                entry.sha256
            );
        }
        let origins = plan.source.origins(&entry.name);
        if origins.is_empty() {
            let Source::Folder(dir) = &plan.source else { unreachable!("mirrors always give origins") };
            bail!(
                "{}: not found in the offline mirror {} (looked for the raw file and .gz, standard and dotted names)",
                entry.name,
                dir.display()
            );
        }
        let mut failures = String::new();
        let mut done = false;
        for origin in &origins {
            match source::fetch(&agent, origin, &entry.name) {
                Ok(bytes) => {
                    let actual = store::sha256_hex(&bytes);
                    if actual != entry.sha256 {
                        let _ = write!(
                            failures,
                            "\n  - {origin}: SHA-256 mismatch: expected {}, got {actual}",
                            entry.sha256
                        );
                        continue;
                    }
                    store::write_atomically(&plan.dest, &entry.name, &bytes)?;
                    eprintln!("fetch-mnist: {} from {origin}: verified, {} bytes", entry.name, bytes.len());
                    outcome.fetched.push(entry.name.clone());
                    done = true;
                    break;
                }
                Err(e) => {
                    let _ = write!(failures, "\n  - {origin}: {e:#}");
                }
            }
        }
        if !done {
            bail!(
                "{}: no source gave the file with SHA-256 {} (nothing written to {}):{failures}",
                entry.name,
                entry.sha256,
                plan.dest.display()
            );
        }
    }
    Ok(outcome)
}
