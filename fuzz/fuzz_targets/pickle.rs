//! The timestamp pickle decoder, a whitelist of what NumPy writes for an array of datetimes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| magpipe_stages::solared::fuzzing::pickle(data));
