//! Replays every fuzz seed and every input the fuzzers ever found (`fuzz/regressions/`) through
//! the same checks the fuzz targets run, so `make test` guards them without a fuzz build.

use std::path::Path;

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 5] = [
    ("npz", magpipe_stages::solared::fuzzing::npz),
    ("npy", magpipe_stages::solared::fuzzing::npy),
    ("pickle", magpipe_stages::solared::fuzzing::pickle),
    ("pipeline_yaml", magpipe_stages::fuzz_pipeline_yaml),
    ("remote_config", magpipe_engine::fuzzing::remote_config),
];

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn seeds_and_found_inputs_pass_the_fuzz_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, check) in TARGETS {
        let seeds = inputs(&root.join("seeds").join(target));
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for f in seeds
            .iter()
            .chain(&inputs(&root.join("regressions").join(target)))
        {
            let data = std::fs::read(f).unwrap();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                panic!("{target}: {} fails its fuzz check", f.display());
            }
        }
    }
}

#[test]
fn the_seeds_are_accepted_inputs_not_just_bytes() {
    // A seed the readers reject would start the fuzzer far from the real format.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for f in inputs(&root.join("npz")) {
        let b = std::fs::read(&f).unwrap();
        let arrays = 1 + usize::from(b[0] % 4);
        magpipe_stages::solared::read_npz_bytes(&f, b[1..].to_vec(), arrays)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for f in inputs(&root.join("pickle")) {
        magpipe_stages::solared::pickle::decode_datetime_array(&std::fs::read(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    let y = std::fs::read_to_string(root.join("pipeline_yaml/pipeline.yaml")).unwrap();
    magpipe_engine::spec::RawSpec::parse(Path::new("pipeline.yaml"), &y).unwrap();
}
