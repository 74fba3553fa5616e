//! One npy member: header parsing and the float64 reader, with and without an expected shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use magpipe_stages::solared::npy;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = npy::parse_header(data) {
        assert!(h.data_offset <= data.len());
    }
    if let Ok((shape, v)) = npy::read_f64(data, None) {
        assert_eq!(shape.iter().product::<usize>(), v.len());
    }
    let _ = npy::read_f64(data, Some(&[81, 4]));
});
