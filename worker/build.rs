//! Links the worker against the project-local libtorch (the PyPI torch wheel in `.venv/`) and
//! bakes its library folder into the binary's RUNPATH, so it runs without LD_LIBRARY_PATH.
//! `MAGPIPE_CUDA=1` (which `make` sets on a machine with an NVIDIA driver) also links
//! libtorch_cuda; see docs/src/guide/gpu.md.

use std::path::{Path, PathBuf};

fn main() {
    // Without libtorch (`--no-default-features`) there is nothing to find or link.
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        println!("cargo:rustc-env=MAGPIPE_CUDA_BUILD=0");
        println!("cargo:rustc-env=MAGPIPE_LIBTORCH_DIR=");
        return;
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=MAGPIPE_ALLOW_FOREIGN_LIBTORCH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=MAGPIPE_CUDA");
    println!("cargo:rerun-if-changed=src/host.cpp");
    let allow_foreign = std::env::var_os("MAGPIPE_ALLOW_FOREIGN_LIBTORCH").is_some();
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let ours = manifest.join("..").join(".venv").join("libtorch");
    // A shell that exports LIBTORCH or LIBTORCH_USE_PYTORCH wins over .cargo/config.toml; never
    // let that silently build against a different libtorch than the one `make setup` pinned.
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() && !allow_foreign {
        panic!(
            "LIBTORCH_USE_PYTORCH is set in your shell, so torch-sys would use whatever `python3` \
             is on PATH instead of the project's .venv. Run `unset LIBTORCH LIBTORCH_USE_PYTORCH` \
             (or set MAGPIPE_ALLOW_FOREIGN_LIBTORCH=1 to build against it on purpose)."
        );
    }
    match std::env::var("LIBTORCH") {
        Ok(v) if !same(Path::new(&v), &ours) && !allow_foreign => panic!(
            "LIBTORCH={v} is exported in your shell, but magpipe builds against the project's \
             pinned torch at {}. Run `unset LIBTORCH LIBTORCH_USE_PYTORCH` and `make setup` (or set \
             MAGPIPE_ALLOW_FOREIGN_LIBTORCH=1 to build against it on purpose).",
            ours.display()
        ),
        Err(_) if !allow_foreign => panic!(
            "LIBTORCH is not set: build through `make` or plain `cargo` in this repository \
             (.cargo/config.toml points it at .venv/libtorch after `make setup`)."
        ),
        _ => {}
    }
    cc::Build::new()
        .cpp(true)
        .file("src/host.cpp")
        .flag_if_supported("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .compile("magpipe_host");
    // The linker's default `--as-needed` drops libtorch_cuda.so, whose only job is to register
    // the CUDA backend when it loads: nothing references its symbols. Then
    // `tch::Cuda::is_available()` is false even on a GPU machine (tch-rs issues 907, 964, 980,
    // 177). tch's own build script links it this way for its examples; its link args do not
    // reach our binaries, so we do the same here. The binary still starts on a CPU-only
    // machine: libtorch_cuda loads without a driver and reports no device.
    if std::env::var("MAGPIPE_CUDA").is_ok_and(|v| v == "1") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        println!("cargo:rustc-env=MAGPIPE_CUDA_BUILD=1");
    } else {
        println!("cargo:rustc-env=MAGPIPE_CUDA_BUILD=0");
    }
    // torch-sys (`links = "tch"`) exports its library folder to direct dependents only.
    match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
            println!("cargo:rustc-env=MAGPIPE_LIBTORCH_DIR={dir}");
        }
        Err(_) => {
            println!(
                "cargo:warning=DEP_TCH_LIBTORCH_LIB not set; the worker will need LD_LIBRARY_PATH"
            );
            println!("cargo:rustc-env=MAGPIPE_LIBTORCH_DIR=");
        }
    }
}

fn same(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
