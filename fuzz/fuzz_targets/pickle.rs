//! The timestamp pickle decoder: a whitelist of the opcodes and globals of a NumPy object array
//! of datetimes. Anything else must be an error, never a panic, a hang or a huge allocation; what
//! it accepts must encode back to a pickle that decodes to the same stamps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use magpipe_stages::solared::pickle;

fuzz_target!(|data: &[u8]| {
    if let Ok(times) = pickle::decode_datetime_array(data) {
        let again = pickle::decode_datetime_array(&pickle::encode_datetime_array(&times))
            .expect("a re-encoded array decodes");
        assert_eq!(again, times);
    }
});
