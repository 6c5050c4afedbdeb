//! libFuzzer target `spec`: every input goes through `actprune_fuzz::entries::spec`, the
//! entry point that `tests/tests/fuzz_regressions.rs` also runs over the corpus.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| actprune_fuzz::entries::spec(data));
