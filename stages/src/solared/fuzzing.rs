//! The properties the fuzz targets (`fuzz/`) check, kept here so the ordinary test suite replays
//! the seeds and every input the fuzzers ever found (`fuzz/regressions/`) without a fuzz build.
//! Each function must return normally for any input: a panic is the bug.

use std::path::Path;

use super::{TILES, npy, pickle};

/// A whole npz file through the reader `ingest` uses; the first byte picks how many data members
/// it is read as (1 like mean_int and mean_mag, up to 4 like mean_pmdop).
pub fn npz(data: &[u8]) {
    let Some((&n, bytes)) = data.split_first() else {
        return;
    };
    let arrays = 1 + usize::from(n % 4);
    match super::read_npz_bytes(Path::new("fuzz.npz"), bytes.to_vec(), arrays) {
        Ok(f) => {
            assert_eq!(f.arrays.len(), arrays);
            for a in &f.arrays {
                assert_eq!(a.len(), TILES * f.times.len());
            }
        }
        Err(e) => {
            let m = e.to_string();
            assert!(!m.contains('\n'), "a multi-line error: {m:?}");
            assert!(
                m.starts_with("fuzz.npz: "),
                "an error without its file: {m:?}"
            );
        }
    }
}

/// One npy member: the header parser and the float64 reader, with and without an expected shape.
pub fn npy(data: &[u8]) {
    if let Ok(h) = npy::parse_header(data) {
        assert!(h.data_offset <= data.len());
    }
    if let Ok((shape, v)) = npy::read_f64(data, None) {
        let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        assert_eq!(n, Some(v.len()), "shape {shape:?}");
    }
    let _ = npy::read_f64(data, Some(&[TILES, 4]));
}

/// The timestamp pickle decoder: whatever it accepts encodes back to a pickle that decodes to the
/// same stamps.
pub fn pickle(data: &[u8]) {
    if let Ok(times) = pickle::decode_datetime_array(data) {
        let again = pickle::decode_datetime_array(&pickle::encode_datetime_array(&times))
            .expect("a re-encoded array decodes");
        assert_eq!(again, times);
    }
}
