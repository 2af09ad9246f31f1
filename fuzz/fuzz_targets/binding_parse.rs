//! Extracting the `countersign` member from clientDataJSON must never panic.
#![no_main]

use countersign_core::ApprovalBinding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ApprovalBinding::from_client_data_json(data);
});
