//! A whole npz file through the reader `ingest` uses (see `magpipe_stages::solared::fuzzing`).
//!
//! A quarter of the mutations are structure-aware (`fuzzing::mutate_zip`): directory entries
//! pointing at other members' headers, duplicate names, local headers that disagree with the
//! directory, overlapping and appended members. Byte flips alone almost never reach those.
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|data: &[u8]| magpipe_stages::solared::fuzzing::npz(data));

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    if seed % 4 != 0 {
        return fuzzer_mutate(data, size, max_size);
    }
    // splitmix64 spreads the 32-bit seed over the bits the mutator reads.
    let mut z = u64::from(seed).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut v = data[..size].to_vec();
    magpipe_stages::solared::fuzzing::mutate_zip(&mut v, z ^ (z >> 31));
    if v.len() > max_size {
        return fuzzer_mutate(data, size, max_size);
    }
    data[..v.len()].copy_from_slice(&v);
    v.len()
});
