//! A whole npz file through the reader `ingest` uses (see `magpipe_stages::solared::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| magpipe_stages::solared::fuzzing::npz(data));
