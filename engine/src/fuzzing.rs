//! The properties the `pipeline_yaml` and `remote_config` fuzz targets (`fuzz/`) check, kept here
//! so the ordinary test suite replays their seeds and every input they ever found
//! (`fuzz/regressions/`).

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

/// `.magpipe/config.yaml` text → every remote checked as `remote add` checks its arguments (the
/// same fields) and, where it passes, its S3 client built: any text gives clients or one-line
/// errors, never a panic (an endpoint without a scheme once panicked at the first request).
pub fn remote_config(data: &[u8]) {
    use crate::remote::config::{self, Credentials};
    use crate::remote::s3::{S3, S3Settings};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let one_line = |m: String| assert!(!m.contains('\n'), "a multi-line error: {m:?}");
    let c = match config::parse(Path::new(".magpipe/config.yaml"), text) {
        Ok(c) => c,
        Err(e) => return one_line(e.to_string()),
    };
    for rc in c.remotes.values() {
        if let Err(e) = rc.validate() {
            one_line(e);
            continue;
        }
        if rc.url.starts_with("s3://") {
            // Anonymous, so the client is built without reading this machine's credentials.
            let s = S3Settings {
                url: rc.url.clone(),
                endpoint: rc.endpoint.clone(),
                region: rc.region.clone(),
                credentials: Some(Credentials::Anonymous),
            };
            if let Err(e) = S3::client(&s) {
                one_line(e.to_string());
            }
        }
    }
}
