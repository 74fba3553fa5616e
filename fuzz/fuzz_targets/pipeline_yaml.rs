//! pipeline.yaml text → spec → plan, for the default and every variant.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| magpipe_stages::fuzz_pipeline_yaml(data));
