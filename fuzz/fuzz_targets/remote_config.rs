//! `.magpipe/config.yaml` text (the fields `remote add` takes) → validated remotes → S3 clients.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| magpipe_engine::fuzzing::remote_config(data));
