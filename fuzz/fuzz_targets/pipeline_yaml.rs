//! pipeline.yaml text → spec → plan, for the default and every declared variant. Bad text must
//! come back as a located error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use magpipe::plan::Plan;
use magpipe::spec::RawSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = RawSpec::parse(std::path::Path::new("pipeline.yaml"), text) else {
        return;
    };
    let _ = Plan::build(&spec, None, &[]);
    for v in &spec.variants {
        let _ = Plan::build(&spec, Some(&v.name), &[]);
    }
});
