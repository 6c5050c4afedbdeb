//! libFuzzer target `idx`: every input goes through `actprune_fuzz::entries::idx`, the
//! entry point that `tests/tests/fuzz_regressions.rs` also runs over the corpus.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| actprune_fuzz::entries::idx(data));
