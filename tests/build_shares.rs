//! Every build that `make` does shares one compilation of the dependencies: the CLI alone (the
//! wheel's maturin build, `make run`), the worker without libtorch (`make run` where torch is not
//! installed, tests/torchless.rs) and `cargo build --workspace` (`make build`) need no compiled
//! dependency that the suite's own build (`cargo test --workspace`) does not already have.
//!
//! Cargo compiles a dependency once per feature set, and the set depends on what is built: before
//! hack/Cargo.toml, the CLI alone and the torchless worker each compiled polars again (6.5 and 7
//! minutes more of `make test` on a 2-core AMD EPYC). This asks cargo for the unit graph of each build (the
//! exact list of compilations it would run, without running them) and compares them.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// One compilation cargo would run, named by what makes it distinct: the package, target, mode,
/// features and profile, and (recursively) the same of every unit it links.
#[derive(Debug)]
struct Unit {
    package: String,
    features: Vec<String>,
    from_workspace: bool,
    identity: String,
}

/// The units of `cargo <args> --release --locked`, from `--unit-graph` (unstable, so the
/// bootstrap switch, which the fuzz build already uses on this stable toolchain).
fn unit_graph(args: &[&str]) -> Vec<Unit> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .args([
            "--release",
            "--locked",
            "--unit-graph",
            "-Z",
            "unstable-options",
        ])
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} --unit-graph failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let graph: Value = serde_json::from_slice(&out.stdout).expect("unit graph JSON");
    let raw = graph["units"].as_array().expect("units").clone();
    let mut identities: HashMap<usize, String> = HashMap::new();
    (0..raw.len())
        .map(|i| {
            let u = &raw[i];
            let pkg_id = u["pkg_id"].as_str().unwrap_or_default();
            Unit {
                package: package_name(pkg_id),
                features: strings(&u["features"]),
                from_workspace: pkg_id.starts_with("path+file://"),
                identity: identity(&raw, i, &mut identities),
            }
        })
        .collect()
}

/// What cargo's own fingerprint of a unit rests on, short of the compiler: the unit's own
/// description and the identities of its dependencies.
fn identity(raw: &[Value], i: usize, memo: &mut HashMap<usize, String>) -> String {
    if let Some(id) = memo.get(&i) {
        return id.clone();
    }
    let u = &raw[i];
    let mut deps: Vec<String> = u["dependencies"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .filter_map(|d| d["index"].as_u64())
                .map(|d| identity(raw, d as usize, memo))
                .collect()
        })
        .unwrap_or_default();
    deps.sort();
    let own = format!(
        "{} {} {:?} {} {:?} {} {} {}",
        u["pkg_id"],
        u["target"]["name"],
        strings(&u["target"]["kind"]),
        u["mode"],
        strings(&u["features"]),
        u["profile"],
        u["platform"],
        deps.join(",")
    );
    let id = blake3::hash(own.as_bytes()).to_hex().to_string();
    memo.insert(i, id.clone());
    id
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `registry+https://…#polars-core@0.55.2` → `polars-core@0.55.2`.
fn package_name(pkg_id: &str) -> String {
    pkg_id.rsplit('#').next().unwrap_or(pkg_id).to_string()
}

/// The dependencies (not workspace crates, which each build compiles for itself) that `sub`
/// would compile and the suite's build would not: first those whose own features differ (the
/// cause, with their features in both builds), then how many more follow only because they
/// link one of those.
fn compiled_again(sub: &[Unit], full: &[Unit]) -> (Vec<String>, usize) {
    let have: BTreeSet<&str> = full.iter().map(|u| u.identity.as_str()).collect();
    let features_in_full = |package: &str| -> BTreeSet<Vec<String>> {
        full.iter()
            .filter(|u| u.package == package)
            .map(|u| u.features.clone())
            .collect()
    };
    let again: Vec<&Unit> = sub
        .iter()
        .filter(|u| !u.from_workspace && !have.contains(u.identity.as_str()))
        .collect();
    let causes: BTreeSet<String> = again
        .iter()
        .filter(|u| !features_in_full(&u.package).contains(&u.features))
        .map(|u| {
            format!(
                "{} with {:?}; the suite's build: {:?}",
                u.package,
                u.features,
                features_in_full(&u.package)
            )
        })
        .collect();
    let packages: BTreeSet<&str> = again.iter().map(|u| u.package.as_str()).collect();
    let followers = packages.len().saturating_sub(causes.len());
    (causes.into_iter().collect(), followers)
}

#[test]
fn the_cli_the_torchless_worker_and_make_build_compile_no_dependency_the_suite_has_not() {
    let full = unit_graph(&["test", "--workspace", "--no-run"]);
    let builds: [(&str, &[&str]); 3] = [
        (
            "the CLI alone (make wheel, make run)",
            &["build", "-p", "magpipe", "--bin", "magpipe"],
        ),
        (
            "the torchless worker (make run without torch, tests/torchless.rs)",
            &["build", "-p", "magpipe-worker", "--no-default-features"],
        ),
        ("make build", &["build", "--workspace"]),
    ];
    let mut problems = Vec::new();
    for (what, args) in builds {
        let (causes, followers) = compiled_again(&unit_graph(args), &full);
        if !causes.is_empty() || followers > 0 {
            problems.push(format!(
                "{what} compiles these again, with other features:\n  {}\nand {followers} more \
                 crates above them",
                causes.join("\n  ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "builds that should share the suite's compiled dependencies do not (give \
         hack/Cargo.toml the missing features):\n{}",
        problems.join("\n")
    );
}
