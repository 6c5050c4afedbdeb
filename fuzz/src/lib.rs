//! The fuzzed entry points, shared by the libFuzzer targets in `fuzz_targets/` and by
//! the ordinary test `tests/tests/fuzz_regressions.rs` (which includes `entries.rs` by
//! path), so that CI replays the corpus and every saved crash without cargo-fuzz.

pub mod entries;
