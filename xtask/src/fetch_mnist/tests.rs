//! Tests of the fetcher against real HTTP servers on 127.0.0.1 (ephemeral ports,
//! bounded request loops, stopped when the test ends) and local folders, all serving
//! the verified copy of MNIST kept beside the project (`../shared/data/mnist`).
//! Everything is written to temporary folders, never to `data/mnist`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::manifest::Manifest;
use super::source::{Origin, Source, decode};
use super::store::sha256_hex;
use super::{Outcome, Plan, fetch, source_for};

/// The small file most tests fetch (10,008 bytes decompressed).
const LABELS: &str = "t10k-labels-idx1-ubyte";
/// A second, larger one (7,840,016 bytes decompressed).
const IMAGES: &str = "t10k-images-idx3-ubyte";

/// The verified, gzip-compressed MNIST that CI and developers have beside the project.
fn shared_mnist() -> PathBuf {
    let dir = crate::project_root().join("..").join("shared").join("data").join("mnist");
    assert!(
        dir.join(format!("{LABELS}.gz")).is_file(),
        "the shared MNIST copy is missing at {}",
        dir.display()
    );
    dir
}

fn shared_gz(name: &str) -> Vec<u8> {
    std::fs::read(shared_mnist().join(format!("{name}.gz"))).unwrap()
}

/// What a test server answers to every request.
#[derive(Clone)]
enum Reply {
    /// The file of the request's name from this folder, or 404.
    Folder(PathBuf),
    /// 404 Not Found.
    NotFound,
    /// These bytes, whatever the path.
    Bytes(Vec<u8>),
}

/// An HTTP server on 127.0.0.1 with an ephemeral port. It answers at most
/// `MAX_REQUESTS` requests, stops by itself after `IDLE` without a request, and is
/// stopped and joined when dropped.
struct Server {
    url: String,
    requests: Arc<AtomicUsize>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

const MAX_REQUESTS: usize = 32;
const IDLE: Duration = Duration::from_secs(30);

impl Server {
    fn start(reply: Reply) -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, count) = (Arc::clone(&server), Arc::clone(&requests));
        let thread = std::thread::spawn(move || {
            for _ in 0..MAX_REQUESTS {
                let Ok(Some(request)) = s.recv_timeout(IDLE) else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let name = request.url().trim_start_matches('/').to_string();
                let body = match &reply {
                    Reply::Folder(dir) if !name.contains('/') && !name.contains("..") => {
                        std::fs::read(dir.join(&name)).ok()
                    }
                    Reply::Folder(_) | Reply::NotFound => None,
                    Reply::Bytes(b) => Some(b.clone()),
                };
                let _ = match body {
                    Some(b) => request.respond(tiny_http::Response::from_data(b)),
                    None => request.respond(tiny_http::Response::empty(404)),
                };
            }
        });
        Server { url: format!("http://127.0.0.1:{port}/"), requests, server, thread: Some(thread) }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A URL on 127.0.0.1 where nothing listens: a port just bound, then released.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/")
}

fn plan(names: &[&str], source: Source, dest: &Path) -> Plan {
    Plan { manifest: Manifest::standard().only(names), source, dest: dest.to_path_buf() }
}

/// The names in `dir`, sorted, hidden temporary files included.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn expected_hash(name: &str) -> String {
    Manifest::standard().entries.into_iter().find(|e| e.name == name).unwrap().sha256
}

#[test]
fn a_good_mirror_gives_all_four_verified_files_and_a_second_run_does_nothing() {
    let server = Server::start(Reply::Folder(shared_mnist()));
    let dest = tempfile::tempdir().unwrap();
    let plan = Plan {
        manifest: Manifest::standard(),
        source: Source::Mirrors(vec![server.url.clone()]),
        dest: dest.path().join("mnist"),
    };
    let first = fetch(&plan).unwrap();
    let all: Vec<String> = Manifest::standard().entries.into_iter().map(|e| e.name).collect();
    assert_eq!(first, Outcome { present: vec![], fetched: all.clone() });
    assert_eq!(listing(&plan.dest), all, "exactly the four files, no temporary file left");
    for e in Manifest::standard().entries {
        assert_eq!(sha256_hex(&std::fs::read(plan.dest.join(&e.name)).unwrap()), e.sha256);
    }
    assert_eq!(server.requests(), 4);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(plan.dest.join(IMAGES)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "readable by all, like any data file");
    }
    // Second run: everything verified in place, nothing requested.
    let second = fetch(&plan).unwrap();
    assert_eq!(second, Outcome { present: all, fetched: vec![] });
    assert_eq!(server.requests(), 4);
}

#[test]
fn failing_mirrors_are_skipped_for_the_next_one() {
    let missing = Server::start(Reply::NotFound);
    let good = Server::start(Reply::Folder(shared_mnist()));
    let dest = tempfile::tempdir().unwrap();
    let source = Source::Mirrors(vec![missing.url.clone(), closed_port_url(), good.url.clone()]);
    let outcome = fetch(&plan(&[LABELS, IMAGES], source, dest.path())).unwrap();
    assert_eq!(outcome.fetched, [IMAGES, LABELS]);
    assert_eq!((missing.requests(), good.requests()), (2, 2), "each file tried on the 404 mirror first");
    assert_eq!(listing(dest.path()), [IMAGES, LABELS]);
}

#[test]
fn a_mirror_serving_bad_bytes_is_an_error_naming_file_and_hashes_and_leaves_nothing() {
    // The right format, one label changed: a plausible but wrong file.
    let mut labels = decode(&shared_gz(LABELS)).unwrap();
    labels[8] = (labels[8] + 1) % 10;
    let bad_hash = sha256_hex(&labels);
    let bad = Server::start(Reply::Bytes(labels));
    let dest = tempfile::tempdir().unwrap();
    let err = fetch(&plan(&[LABELS], Source::Mirrors(vec![bad.url.clone()]), dest.path())).unwrap_err();
    let message = format!("{err:#}");
    for part in [LABELS, &expected_hash(LABELS), &bad_hash, "mismatch", &bad.url] {
        assert!(message.contains(part), "{message}\nshould mention {part}");
    }
    assert_eq!(listing(dest.path()), Vec::<String>::new(), "nothing left behind");
    // With a good mirror after it, the bad one is reported nowhere and the file lands.
    let good = Server::start(Reply::Folder(shared_mnist()));
    let source = Source::Mirrors(vec![bad.url.clone(), good.url.clone()]);
    assert_eq!(fetch(&plan(&[LABELS], source, dest.path())).unwrap().fetched, [LABELS]);
}

#[test]
fn every_mirror_failing_lists_each_error() {
    let missing = Server::start(Reply::NotFound);
    let closed = closed_port_url();
    let dest = tempfile::tempdir().unwrap();
    let source = Source::Mirrors(vec![missing.url.clone(), closed.clone()]);
    let err = fetch(&plan(&[LABELS], source, dest.path())).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains(&format!("{}{LABELS}.gz: http status: 404", missing.url)), "{message}");
    assert!(message.contains(&format!("{closed}{LABELS}.gz")), "{message}");
    assert!(message.contains(&expected_hash(LABELS)), "{message}");
    assert_eq!(listing(dest.path()), Vec::<String>::new());
}

#[test]
fn a_failed_fetch_removes_the_folder_it_created_but_not_one_that_existed() {
    let missing = Server::start(Reply::NotFound);
    let parent = tempfile::tempdir().unwrap();
    let fresh = parent.path().join("new").join("mnist");
    let source = Source::Mirrors(vec![missing.url.clone()]);
    assert!(fetch(&plan(&[LABELS], source.clone(), &fresh)).is_err());
    assert!(!fresh.exists(), "an empty folder would look like a dataset");
    let existing = tempfile::tempdir().unwrap();
    assert!(fetch(&plan(&[LABELS], source, existing.path())).is_err());
    assert!(existing.path().is_dir(), "a folder the user made is never removed");
}

#[test]
fn an_offline_folder_of_gz_files_gives_all_four_files() {
    let dest = tempfile::tempdir().unwrap();
    let plan = Plan {
        manifest: Manifest::standard(),
        source: Source::Folder(shared_mnist()),
        dest: dest.path().to_path_buf(),
    };
    assert_eq!(fetch(&plan).unwrap().fetched.len(), 4);
    assert_eq!(fetch(&plan).unwrap().present.len(), 4, "a second run does nothing");
    assert_eq!(listing(dest.path()).len(), 4);
}

#[test]
fn an_offline_folder_of_raw_files_with_dotted_names_works_too() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join(LABELS), decode(&shared_gz(LABELS)).unwrap()).unwrap();
    std::fs::write(src.path().join("t10k-images.idx3-ubyte"), decode(&shared_gz(IMAGES)).unwrap()).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let outcome =
        fetch(&plan(&[LABELS, IMAGES], Source::Folder(src.path().to_path_buf()), dest.path())).unwrap();
    assert_eq!(outcome.fetched, [IMAGES, LABELS]);
    assert_eq!(sha256_hex(&std::fs::read(dest.path().join(IMAGES)).unwrap()), expected_hash(IMAGES));
}

/// Fetches LABELS from a folder holding only `bytes` as `LABELS.gz`; returns the
/// error message after checking that nothing was left behind.
fn offline_error(bytes: &[u8]) -> String {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join(format!("{LABELS}.gz")), bytes).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let err = fetch(&plan(&[LABELS], Source::Folder(src.path().to_path_buf()), dest.path())).unwrap_err();
    assert_eq!(listing(dest.path()), Vec::<String>::new(), "nothing left behind");
    let message = format!("{err:#}");
    assert!(message.contains(LABELS) && message.contains(&expected_hash(LABELS)), "{message}");
    message
}

#[test]
fn a_truncated_source_file_is_rejected_clearly() {
    let gz = shared_gz(LABELS);
    let message = offline_error(&gz[..gz.len() / 2]);
    assert!(message.contains("corrupt or truncated gzip stream"), "{message}");
}

#[test]
fn a_corrupted_source_file_is_rejected_clearly() {
    // A flipped bit in the CRC32 of the gzip trailer: the data inflate, the check fails.
    let mut gz = shared_gz(LABELS);
    let at = gz.len() - 6;
    gz[at] ^= 0x01;
    let message = offline_error(&gz);
    assert!(message.contains("corrupt or truncated gzip stream"), "{message}");
    // A raw file with one byte changed: only the hash can tell.
    let mut raw = decode(&shared_gz(LABELS)).unwrap();
    raw[100] ^= 0x01;
    let message = offline_error(&raw);
    assert!(message.contains(&format!("got {}", sha256_hex(&raw))), "{message}");
}

#[test]
fn a_missing_file_in_the_offline_folder_is_named() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let err = fetch(&plan(&[LABELS], Source::Folder(src.path().to_path_buf()), dest.path())).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains(LABELS) && message.contains("not found in the offline mirror"), "{message}");
}

#[test]
fn a_wrong_file_already_present_is_replaced() {
    let dest = tempfile::tempdir().unwrap();
    std::fs::write(dest.path().join(LABELS), b"not MNIST").unwrap();
    let outcome = fetch(&plan(&[LABELS], Source::Folder(shared_mnist()), dest.path())).unwrap();
    assert_eq!(outcome.fetched, [LABELS]);
    assert_eq!(sha256_hex(&std::fs::read(dest.path().join(LABELS)).unwrap()), expected_hash(LABELS));
    assert_eq!(listing(dest.path()), [LABELS]);
}

#[test]
fn sources_follow_the_documented_precedence() {
    let public: Vec<String> = super::PUBLIC_MIRRORS.iter().map(|m| m.to_string()).collect();
    assert_eq!(source_for(None, None, None), Source::Mirrors(public.clone()));
    assert_eq!(source_for(None, None, Some("".into())), Source::Mirrors(public.clone()));
    assert_eq!(source_for(None, None, Some("/x".into())), Source::Folder("/x".into()));
    assert_eq!(source_for(Some("/a".into()), None, Some("/x".into())), Source::Folder("/a".into()));
    let first = |url: &str| Source::Mirrors(std::iter::once(url.to_string()).chain(public.clone()).collect());
    assert_eq!(source_for(None, Some("http://m/".into()), Some("/x".into())), first("http://m/"));
    assert_eq!(source_for(None, None, Some("https://e/".into())), first("https://e/"));
}

#[test]
fn origins_of_a_mirror_and_of_a_folder() {
    let mirrors = Source::Mirrors(vec!["http://a/x".into(), "http://b/".into()]);
    assert_eq!(
        mirrors.origins(LABELS),
        [Origin::Url(format!("http://a/x/{LABELS}.gz")), Origin::Url(format!("http://b/{LABELS}.gz"))]
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t10k-labels.idx1-ubyte.gz"), b"").unwrap();
    std::fs::write(dir.path().join(LABELS), b"").unwrap();
    assert_eq!(
        Source::Folder(dir.path().to_path_buf()).origins(LABELS),
        [Origin::File(dir.path().join(LABELS)), Origin::File(dir.path().join("t10k-labels.idx1-ubyte.gz"))]
    );
}
