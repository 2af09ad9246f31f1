//! What settlement runs on every document it receives: must never panic, and must
//! never accept bytes the trusted gateway key did not sign.
#![no_main]

use countersign_core::certificate::Registry;
use countersign_core::policy::Policy;
use countersign_core::release::{Trust, verify_release};
use libfuzzer_sys::fuzz_target;

static POLICY: std::sync::LazyLock<Policy> =
    std::sync::LazyLock::new(|| serde_json::from_str(include_str!("policy.json")).expect("policy"));
static REGISTRY: std::sync::LazyLock<Registry> =
    std::sync::LazyLock::new(|| serde_json::from_str(include_str!("registry.json")).expect("registry"));

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let trust = Trust { gateway: &key, policy: &POLICY, registry: &REGISTRY };
    assert!(verify_release(data, &trust).is_err(), "accepted a document nobody signed");
});
