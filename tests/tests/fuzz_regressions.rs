//! Replays every fuzz input kept in the repository — the seed corpora in
//! `fuzz/corpus/<target>/` and the crashes found in `fuzz/regressions/<target>/` —
//! through the same entry points the libFuzzer targets use (`fuzz/src/entries.rs`,
//! included by path), so that CI checks them without cargo-fuzz or a nightly compiler.

#[path = "../../fuzz/src/entries.rs"]
mod entries;

use std::path::PathBuf;

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = actprune_tests::project_root().join("fuzz").join(kind).join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.map(|e| e.expect("readable fuzz folder").path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Runs every file of `fuzz/{corpus,regressions}/<target>/`, naming the file that fails.
fn replay(target: &str) -> usize {
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        for path in inputs(kind, target) {
            let data = std::fs::read(&path).expect("readable fuzz input");
            let outcome = std::panic::catch_unwind(|| entries::run(target, &data));
            assert!(outcome.is_ok(), "fuzz input {} fails target `{target}`", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn every_target_has_a_seed_corpus() {
    for target in entries::TARGETS {
        assert!(!inputs("corpus", target).is_empty(), "fuzz/corpus/{target}/ is empty");
    }
}

#[test]
fn idx_corpus_and_regressions_pass() {
    assert!(replay("idx") > 0);
}

#[test]
fn model_file_corpus_and_regressions_pass() {
    assert!(replay("model_file") > 0);
}

#[test]
fn spec_corpus_and_regressions_pass() {
    assert!(replay("spec") > 0);
}

#[test]
fn plan_corpus_and_regressions_pass() {
    assert!(replay("plan") > 0);
}

/// The entry points are not vacuous: they accept the well-formed seeds (a replay of
/// inputs that are all rejected early would prove nothing).
#[test]
fn well_formed_seeds_are_accepted_by_the_libraries() {
    let root = actprune_tests::project_root().join("fuzz").join("corpus");
    let conv = std::fs::read(root.join("model_file").join("conv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conv.safetensors");
    std::fs::write(&path, conv).unwrap();
    let (model, meta) = net::load(&path).expect("the conv seed is a valid model file");
    assert_eq!(model.spec(), "conv2k3,relu,pool2,flatten,fc2");
    assert_eq!(meta.get("seed").map(String::as_str), Some("3"));
    let spec = std::fs::read_to_string(root.join("spec").join("spec0")).unwrap();
    assert_eq!(net::parse_spec(&spec).unwrap().len(), 12);
}

/// A hostile model file: tiny, but its metadata announces a model of billions of
/// parameters. Found by reasoning before fuzzing; `net::load` must refuse it from the
/// file's length instead of allocating what the metadata claims.
#[test]
fn model_file_claiming_huge_tensors_is_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.safetensors");
    let header = r#"{"__metadata__":{"format":"pt","spec":"flatten,fc4000000000","input_shape":"1,1000,1000","num_classes":"4000000000"}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = net::load(&path).expect_err("a 130-byte file cannot hold this model").to_string();
    assert!(err.contains("parameters"), "{err}");
}
