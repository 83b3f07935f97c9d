//! Fuzzes the restricted `.pdparams` reader: any input must give Ok or Err,
//! never a panic, a hang or a runaway allocation.
//!
//! Run from the repository root with a nightly toolchain and cargo-fuzz:
//! `cargo +nightly fuzz run --fuzz-dir tests/fuzz pdparams CORPUS_DIR -- -dict=tests/fuzz/pdparams.dict`
//! (README.md next to Cargo.toml has the full recipe).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kineto::checkpoint::pdparams::parse_pdparams(data, Path::new("fuzz.pdparams"));
});
