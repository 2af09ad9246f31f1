//! The gateway's parsing of the request-signing headers (CS-Key, CS-Timestamp,
//! CS-Nonce, CS-Signature) and of the string it verifies must never panic.
//! Input: the four header values separated by 0x00, then the body.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use countersign_gateway::auth::{signed_headers, string_to_sign};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |b| *b == 0);
    let mut headers = HeaderMap::new();
    for name in ["cs-key", "cs-timestamp", "cs-nonce", "cs-signature"] {
        if let Some(Ok(v)) = parts.next().map(HeaderValue::from_bytes) {
            headers.insert(name, v);
        }
    }
    let body = parts.next().unwrap_or_default();
    if let Ok(h) = signed_headers(&headers) {
        let _ = string_to_sign("POST", "/v1/withdrawals", "", h.timestamp, h.nonce, "idem", body);
    }
});
