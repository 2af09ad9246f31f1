//! Release to settlement: the document settlement receives with a released operation.
//!
//! For an operation released because policy allowed it, the evidence is the
//! gateway's Ed25519 signature over the canonical operation and the basis of the
//! release. (Quorum certificates with the approvers' WebAuthn signatures are added
//! with the approval ceremony.)
//!
//! ```text
//! signature = Ed25519(gateway key, "countersign:release:v1" || 0x00 || JCS(document without "signature"))
//! ```

use countersign_core::{Digest, Operation, Timestamp, canonical};
use data_encoding::BASE64URL_NOPAD;
use ed25519_dalek::Signer;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::keys::GatewayKeys;

/// Domain prefix of release signatures.
pub const RELEASE_DOMAIN: &[u8] = b"countersign:release:v1";

/// Build and sign the release document.
///
/// # Errors
/// Encoding failures (not expected for a valid operation).
pub fn certificate(op: &Operation, keys: &GatewayKeys, basis: &str, now: Timestamp) -> Result<Value> {
    let canonical = String::from_utf8(canonical::encode(op)?).map_err(Error::internal)?;
    let mut doc = json!({
        "version": 1,
        "operation": canonical,
        "digest": Digest::of(op)?.to_hex(),
        "basis": basis,
        "approvals": [],
        "released_at": now,
        "gateway_key": BASE64URL_NOPAD.encode(keys.verifying_key().as_bytes()),
    });
    let mut message = RELEASE_DOMAIN.to_vec();
    message.push(0);
    message.extend(countersign_core::canonical::jcs(&doc)?);
    let signature = keys.signing_key().sign(&message);
    if let Value::Object(map) = &mut doc {
        map.insert("signature".into(), Value::String(BASE64URL_NOPAD.encode(&signature.to_bytes())));
    }
    Ok(doc)
}
