//! The property the `pipeline_yaml` fuzz target (`fuzz/`) checks, kept here so the ordinary test
//! suite replays its seeds and every input it ever found (`fuzz/regressions/`).

use std::path::Path;

use crate::plan::Plan;
use crate::spec::RawSpec;

/// pipeline.yaml text → spec → plan for the default and every declared variant: any text gives
/// a plan or a one-line located error, never a panic.
pub fn pipeline_yaml(registry: &crate::Registry, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let one_line = |e: &dyn std::fmt::Display| {
        let m = e.to_string();
        assert!(!m.contains('\n'), "a multi-line error: {m:?}");
        assert!(
            m.starts_with("pipeline.yaml"),
            "an error without its file: {m:?}"
        );
    };
    let spec = match RawSpec::parse(Path::new("pipeline.yaml"), text) {
        Ok(s) => s,
        Err(e) => return one_line(&e),
    };
    if let Err(e) = Plan::build(&spec, registry, None, &[]) {
        one_line(&e);
    }
    for v in &spec.variants {
        if let Err(e) = Plan::build(&spec, registry, Some(&v.name), &[]) {
            one_line(&e);
        }
    }
}
