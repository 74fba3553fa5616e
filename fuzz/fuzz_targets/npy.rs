//! One npy member: header parser and float64 reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| magpipe_stages::solared::fuzzing::npy(data));
