//! libFuzzer target `plan`: every input goes through `actprune_fuzz::entries::plan`, the
//! entry point that `tests/tests/fuzz_regressions.rs` also runs over the corpus.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| actprune_fuzz::entries::plan(data));
