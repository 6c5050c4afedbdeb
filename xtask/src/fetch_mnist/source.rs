//! Where the MNIST files come from: an ordered list of HTTP mirrors, or a local folder
//! (an offline mirror) of `.gz` or raw files; and turning what they give into the
//! decompressed bytes that the manifest's hashes describe.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use flate2::read::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressStyle};

/// The public mirrors, in the order torchvision tries them. The files are
/// `<mirror><name>.gz`.
pub const PUBLIC_MIRRORS: [&str; 2] =
    ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"];

/// Largest file we accept, compressed or not: the largest MNIST file (training
/// images) is 47,040,016 bytes decompressed. A cap stops a gzip bomb or an endless
/// response from filling the memory.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The first two bytes of every gzip stream (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Where to take the files from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Base URLs, tried in order until one gives a file with the right hash.
    Mirrors(Vec<String>),
    /// A local folder holding each file under its name, raw or with `.gz`.
    Folder(PathBuf),
}

/// One place a single file may be taken from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A URL to download.
    Url(String),
    /// A local file to read.
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Url(url) => f.write_str(url),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl Source {
    /// The places file `name` may be taken from, in the order to try them. For a
    /// folder, only the files that exist: the raw file first (no decompression), then
    /// `.gz`, each also under the dotted name some distributions use
    /// (`t10k-images.idx3-ubyte`).
    pub fn origins(&self, name: &str) -> Vec<Origin> {
        match self {
            Source::Mirrors(bases) => bases
                .iter()
                .map(|base| {
                    let slash = if base.ends_with('/') { "" } else { "/" };
                    Origin::Url(format!("{base}{slash}{name}.gz"))
                })
                .collect(),
            Source::Folder(dir) => {
                let dotted = name.replacen("-idx", ".idx", 1);
                let names = [name.to_string(), format!("{name}.gz"), dotted.clone(), format!("{dotted}.gz")];
                let mut found: Vec<Origin> = Vec::new();
                for n in names {
                    let path = dir.join(n);
                    if path.is_file() && !found.contains(&Origin::File(path.clone())) {
                        found.push(Origin::File(path));
                    }
                }
                found
            }
        }
    }
}

/// An HTTP client whose every phase has a time limit, so that an unreachable mirror
/// fails within seconds and the next one is tried.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_resolve(Some(Duration::from_secs(10)))
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(600)))
        .build()
        .into()
}

/// Takes the bytes of one file from `origin` and decompresses them if they are gzip.
pub fn fetch(agent: &ureq::Agent, origin: &Origin, name: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = match origin {
        Origin::Url(url) => download(agent, url, name)?,
        Origin::File(path) => read_capped(path)?,
    };
    decode(&bytes)
}

/// Downloads `url` into memory, with a progress bar on a terminal.
fn download(agent: &ureq::Agent, url: &str, name: &str) -> anyhow::Result<Vec<u8>> {
    let response = agent.get(url).call()?;
    let (_, body) = response.into_parts();
    let total = body.content_length();
    if let Some(len) = total
        && len > MAX_FILE_BYTES
    {
        bail!("the server announces {len} bytes, more than the {MAX_FILE_BYTES} bytes any MNIST file takes");
    }
    // Hidden when stderr is not a terminal (CI logs, tests).
    let bar = match total {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("a valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.set_message(name.to_string());
    let reader = body.into_with_config().limit(MAX_FILE_BYTES).reader();
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    let read = bar.wrap_read(reader).read_to_end(&mut bytes);
    bar.finish_and_clear();
    read.context("download interrupted")?;
    Ok(bytes)
}

/// Reads a local file, refusing one larger than [`MAX_FILE_BYTES`].
fn read_capped(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        bail!("larger than the {MAX_FILE_BYTES} bytes any MNIST file takes");
    }
    Ok(bytes)
}

/// The decompressed content of `bytes` if they are a gzip stream, else `bytes` as they
/// are (a raw file). A corrupt or truncated gzip stream, or one that inflates past
/// [`MAX_FILE_BYTES`], is an error.
pub fn decode(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(5).min(MAX_FILE_BYTES as usize));
    MultiGzDecoder::new(bytes)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .context("corrupt or truncated gzip stream")?;
    if out.len() as u64 > MAX_FILE_BYTES {
        bail!("gzip stream inflates past the {MAX_FILE_BYTES} bytes any MNIST file takes");
    }
    Ok(out)
}
