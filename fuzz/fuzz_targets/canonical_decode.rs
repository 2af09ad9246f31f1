//! Strict decoding of canonical operations must never panic, and whatever it
//! accepts must be canonical: re-encoding gives back exactly the input bytes.
#![no_main]

use countersign_core::canonical;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = canonical::decode(data) {
        let again = canonical::encode(&op).expect("a decoded operation encodes");
        assert_eq!(again, data, "decode accepted non-canonical bytes");
    }
});
