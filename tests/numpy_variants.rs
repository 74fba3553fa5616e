//! Files written by NumPy itself, in every form it writes, are read to exactly the values NumPy
//! reads: the real SolARED files re-saved by NumPy 2.x (`np.savez`, `np.savez_compressed`),
//! big-endian and Fortran-ordered, npy format versions 1.0–3.0, Zip64 records, float32 and a
//! one-hour AR. Each must give a `series.parquet` byte-identical to the original files' (or, for
//! float32, to float64 files holding the same values), so nothing downstream can tell them apart.
//!
//! The fixtures come from `tests/support/npz_variants.py`, run with the NumPy that `make test`
//! installs in `.venv`.

mod common;

use std::path::{Path, PathBuf};

use common::{Project, Run, repo, solared_dir};
use magpipe_stages::solared;

/// Three ARs of different lengths (240, 240 and 120 hours) and NaN patterns.
const ARS: [u32; 3] = [11130, 11698, 13165];

fn python() -> PathBuf {
    let p = repo().join(".venv/bin/python");
    assert!(
        p.is_file(),
        "{} is missing: `make test` builds the test venv with numpy",
        p.display()
    );
    p
}

/// Runs the NumPy helper on the real ARs, into `out/<variant>/AR<n>/`.
fn numpy_variants(out: &Path) {
    let mut args = vec![
        repo()
            .join("tests/support/npz_variants.py")
            .display()
            .to_string(),
        solared_dir().display().to_string(),
        out.display().to_string(),
    ];
    args.extend(ARS.iter().map(u32::to_string));
    let o = std::process::Command::new(python())
        .args(&args)
        .output()
        .expect("run python");
    assert!(
        o.status.success(),
        "npz_variants.py failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

const INGEST_ONLY: &str = "version: 1
stages:
  ingest:
    kind: ingest_solared
    params:
      data_dir: ${SOLARED_DIR}
";

/// The bytes of the `series.parquet` that ingest writes for the data folder `data`.
fn series_of(p: &Project, data: &Path) -> Vec<u8> {
    let r = Run::from(
        p.cmd(&["run"])
            .env("SOLARED_DIR", data)
            .output()
            .expect("magpipe"),
    );
    r.assert_ok();
    let a = Run::from(
        p.cmd(&["artifact", "ingest", "series"])
            .env("SOLARED_DIR", data)
            .output()
            .expect("magpipe"),
    );
    a.assert_ok();
    std::fs::read(a.stdout.trim()).unwrap()
}

/// A data folder of links to the real ARs.
fn originals(root: &Path) -> PathBuf {
    let d = root.join("original");
    std::fs::create_dir_all(&d).unwrap();
    for ar in ARS {
        std::os::unix::fs::symlink(
            solared_dir().join(format!("AR{ar}")),
            d.join(format!("AR{ar}")),
        )
        .unwrap();
    }
    d
}

#[test]
fn every_form_numpy_writes_ingests_to_the_same_table() {
    let tmp = tempfile::tempdir().unwrap();
    numpy_variants(tmp.path());
    let p = Project::new(INGEST_ONLY);
    let original = series_of(&p, &originals(tmp.path()));
    let mut differ = vec![];
    for v in [
        "savez",
        "savez_compressed",
        "big_endian",
        "fortran",
        "big_endian_fortran_compressed",
        "npy_v1",
        "npy_v2",
        "npy_v3",
        "zip64",
    ] {
        if series_of(&p, &tmp.path().join(v)) != original {
            differ.push(v);
        }
    }
    assert!(differ.is_empty(), "series.parquet differs for {differ:?}");
    // float32 holds other values than the originals; the same values as float64 files do.
    let f32_big = series_of(&p, &tmp.path().join("float32_big"));
    assert_ne!(f32_big, original, "float32 rounding should show");
    assert_eq!(
        f32_big,
        series_of(&p, &tmp.path().join("float32_big_as_f8"))
    );
}

#[test]
fn a_one_hour_ar_from_numpy_2_reads_like_the_same_hour_in_the_original_format() {
    let tmp = tempfile::tempdir().unwrap();
    numpy_variants(tmp.path());
    // The same first hour, written by magpipe's own writer in the SolARED files' format.
    let reference = tmp.path().join("first_hour_reference");
    for ar in ARS {
        let s = solared::load_ar(&solared_dir(), ar).unwrap();
        solared::write_ar(&reference, &s.first_hours(1)).unwrap();
    }
    let p = Project::new(INGEST_ONLY);
    assert_eq!(
        series_of(&p, &tmp.path().join("first_hour")),
        series_of(&p, &reference)
    );
}
