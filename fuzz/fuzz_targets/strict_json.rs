//! The strict JSON parser (duplicate keys, depth, numbers) behind every signed
//! document must never panic, and what it accepts must be valid JSON to serde_json.
#![no_main]

use countersign_core::canonical::parse_strict;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = parse_strict(data) {
        let again = serde_json::to_vec(&value).expect("an accepted value serialises");
        assert!(serde_json::from_slice::<serde_json::Value>(&again).is_ok());
    }
});
