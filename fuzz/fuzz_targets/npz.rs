//! A whole npz file through the reader `ingest` uses: zip directory, deflate, npy headers,
//! float64 arrays and the pickled timestamps. The first byte picks how many data members the
//! file is read as (1 like mean_int/mean_mag, up to 4 like mean_pmdop).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, bytes)) = data.split_first() else {
        return;
    };
    let arrays = 1 + usize::from(n % 4);
    let path = std::path::Path::new("fuzz.npz");
    if let Ok(f) = magpipe_stages::solared::read_npz_bytes(path, bytes.to_vec(), arrays) {
        assert_eq!(f.arrays.len(), arrays);
        for a in &f.arrays {
            assert_eq!(a.len(), magpipe_stages::solared::TILES * f.times.len());
        }
    }
});
