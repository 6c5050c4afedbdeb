//! libFuzzer target `model_file`: every input goes through `actprune_fuzz::entries::model_file`, the
//! entry point that `tests/tests/fuzz_regressions.rs` also runs over the corpus.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| actprune_fuzz::entries::model_file(data));
