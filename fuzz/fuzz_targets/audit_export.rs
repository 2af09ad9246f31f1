//! Verifying an audit export (JSON lines, hashes, signed checkpoints) must never
//! panic on whatever file it is given.
#![no_main]

use countersign_core::audit::verify_export;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let _ = verify_export(text, &key);
    }
});
