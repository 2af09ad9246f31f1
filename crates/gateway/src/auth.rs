//! API-key request authentication (see `docs/api-signing.md`).
//!
//! ```text
//! string to sign = "countersign-request-v1" LF METHOD LF PATH LF QUERY LF TIMESTAMP LF NONCE LF
//!                  IDEMPOTENCY-KEY LF hex(SHA-256(body))
//! CS-Key: <key id>   CS-Timestamp: <unix seconds>   CS-Nonce: <16..64 of [A-Za-z0-9_-]>
//! CS-Signature: base64url(Ed25519(string)) or base64url(HMAC-SHA256(secret, string))
//! ```
//!
//! Checks, in order, each with its own error code: headers present and well formed;
//! key known; timestamp within the window; signature valid; key not revoked, not
//! expired, not frozen; source address in the key's allowlist; scope granted; nonce
//! not used before. The nonce is recorded only after the signature verifies, so
//! nobody without the key can burn a key's nonces.

use std::net::IpAddr;

use axum::http::{HeaderMap, Method, Uri};
use countersign_core::Timestamp;
use countersign_core::operation::{Scope, SigningAlgorithm};
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::Mac;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::keys::{GatewayKeys, hmac_sha256};
use crate::store::{ApiKeyRecord, AuditEvent, Store};

/// Header with the key id.
pub const KEY_HEADER: &str = "cs-key";
/// Header with the Unix-seconds timestamp.
pub const TIMESTAMP_HEADER: &str = "cs-timestamp";
/// Header with the nonce.
pub const NONCE_HEADER: &str = "cs-nonce";
/// Header with the signature.
pub const SIGNATURE_HEADER: &str = "cs-signature";
/// First line of the string to sign.
pub const SCHEME: &str = "countersign-request-v1";

/// The bytes a client signs.
#[must_use]
pub fn string_to_sign(
    method: &str,
    path: &str,
    query: &str,
    timestamp: i64,
    nonce: &str,
    idempotency_key: &str,
    body: &[u8],
) -> Vec<u8> {
    let body_hash = HEXLOWER.encode(&Sha256::digest(body));
    format!("{SCHEME}\n{method}\n{path}\n{query}\n{timestamp}\n{nonce}\n{idempotency_key}\n{body_hash}")
        .into_bytes()
}

/// The parts of a request that authentication looks at.
#[derive(Debug)]
pub struct RequestParts<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Request target.
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// Raw body.
    pub body: &'a [u8],
    /// Peer address.
    pub peer: IpAddr,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str> {
    let value = headers.get(name).ok_or_else(|| {
        Error::unauthenticated("auth.missing_header", format!("the {name} header is required"))
    })?;
    value
        .to_str()
        .map_err(|_| Error::unauthenticated("auth.malformed_header", format!("{name} is not ASCII")))
}

fn valid_nonce(n: &str) -> bool {
    (16..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The request-signing headers, parsed (nothing checked against a key yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders<'h> {
    /// `CS-Key`.
    pub key_id: &'h str,
    /// `CS-Timestamp`, Unix seconds.
    pub timestamp: i64,
    /// `CS-Nonce`.
    pub nonce: &'h str,
    /// `CS-Signature`, decoded.
    pub signature: Vec<u8>,
}

/// Parse the request-signing headers (the first step of [`authenticate`]; pure,
/// and fuzzed by `fuzz/fuzz_targets/request_headers.rs`).
///
/// # Errors
/// `auth.missing_header`, `auth.malformed_header`.
pub fn signed_headers(headers: &HeaderMap) -> Result<SignedHeaders<'_>> {
    let key_id = header(headers, KEY_HEADER)?;
    let ts_text = header(headers, TIMESTAMP_HEADER)?;
    let nonce = header(headers, NONCE_HEADER)?;
    let signature = header(headers, SIGNATURE_HEADER)?;
    let timestamp: i64 = ts_text.parse().map_err(|_| {
        Error::unauthenticated("auth.malformed_header", "cs-timestamp must be Unix seconds (an integer)")
    })?;
    if !valid_nonce(nonce) {
        return Err(Error::unauthenticated(
            "auth.malformed_header",
            "cs-nonce must be 16 to 64 characters of A-Z a-z 0-9 - _",
        ));
    }
    let signature = BASE64URL_NOPAD.decode(signature.as_bytes()).map_err(|_| {
        Error::unauthenticated("auth.malformed_header", "cs-signature must be base64url without padding")
    })?;
    Ok(SignedHeaders { key_id, timestamp, nonce, signature })
}

/// Authenticate a request for `scope`. On success the key's last use is recorded.
///
/// # Errors
/// An `auth.*` error naming the failed check; security-relevant failures by a known
/// key are appended to the audit chain.
pub async fn authenticate(
    store: &Store,
    keys: &GatewayKeys,
    throttle: &RefusalThrottle,
    req: &RequestParts<'_>,
    scope: Scope,
    window_seconds: i64,
    now: Timestamp,
) -> Result<ApiKeyRecord> {
    // Refusals before a key is identified are audited per source address (throttled
    // the same way), so an incident review sees the probing.
    let refuse_source = |error: Error| async {
        let source = format!("source:{}", req.peer);
        if throttle.admit(&source, error.code, now) {
            let event = AuditEvent::new(source, "auth.refused")
                .detail("code", error.code)
                .detail("source_ip", req.peer.to_string())
                .detail("path", req.uri.path());
            store.audit(&event, now).await?;
        }
        Err(error)
    };
    let SignedHeaders { key_id, timestamp, nonce, signature } = match signed_headers(req.headers) {
        Ok(h) => h,
        Err(e) => return refuse_source(e).await,
    };
    let Some(key) = store.api_key(key_id).await? else {
        // An unknown key id is answered exactly as a known key with a wrong
        // signature (same checks first, same code, a signature verified all the
        // same), so key ids cannot be enumerated.
        if timestamp.abs_diff(now.unix()) > window_seconds.unsigned_abs() {
            return Err(stale_timestamp(window_seconds));
        }
        let _ = decoy_key().verify_strict(b"countersign: no such key", &Signature::from_bytes(&[0; 64]));
        return refuse_source(bad_signature()).await;
    };
    let actor = format!("api_key:{}", key.id);
    let refuse = |error: Error| async {
        if throttle.admit(key.id.as_str(), error.code, now) {
            let event = AuditEvent::new(actor.clone(), "auth.refused")
                .detail("key_id", key.id.as_str())
                .detail("code", error.code)
                .detail("source_ip", req.peer.to_string())
                .detail("path", req.uri.path());
            store.audit(&event, now).await?;
        }
        Err(error)
    };

    if timestamp.abs_diff(now.unix()) > window_seconds.unsigned_abs() {
        return Err(stale_timestamp(window_seconds));
    }
    let message = string_to_sign(
        req.method.as_str(),
        req.uri.path(),
        req.uri.query().unwrap_or(""),
        timestamp,
        nonce,
        // Signed, so nobody on the path can replay a held request as a new order.
        req.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or(""),
        req.body,
    );
    if !signature_valid(&key, keys, &message, &signature) {
        return refuse(bad_signature()).await;
    }
    if key.revoked_at.is_some() {
        return refuse(Error::forbidden("auth.key_revoked", "this API key has been revoked")).await;
    }
    if key.expires_at.is_some_and(|e| now >= e) {
        return refuse(Error::forbidden("auth.key_expired", "this API key has expired")).await;
    }
    let freeze = store.freeze_state().await?;
    if freeze.frozen {
        return refuse(Error::forbidden(
            "auth.frozen",
            "all API keys are frozen (break glass); unfreezing needs an approved Unfreeze operation",
        ))
        .await;
    }
    if !ip_allowed(&key.ip_allowlist, req.peer) {
        return refuse(Error::forbidden(
            "auth.ip_not_allowed",
            format!("source address {} is not in this key's allowlist", req.peer),
        ))
        .await;
    }
    if !key.scopes.contains(&scope) {
        return refuse(Error::forbidden(
            "auth.scope_missing",
            format!("this API key lacks the {scope:?} scope"),
        ))
        .await;
    }
    let nonce_expiry = now.plus_seconds(2 * window_seconds + 1);
    if !store.use_nonce(key.id.as_str(), nonce, nonce_expiry).await? {
        return refuse(Error::unauthenticated(
            "auth.replayed_nonce",
            "this nonce was already used with this key",
        ))
        .await;
    }
    store.touch_api_key(&key, req.peer, now).await?;
    Ok(key)
}

fn stale_timestamp(window_seconds: i64) -> Error {
    Error::unauthenticated(
        "auth.stale_timestamp",
        format!(
            "cs-timestamp is more than {window_seconds} s from the gateway's clock; check the client's clock"
        ),
    )
}

/// The one answer for an unknown key and a wrong signature alike.
fn bad_signature() -> Error {
    Error::unauthenticated("auth.bad_signature", "the signature does not verify for this key and request")
}

/// A fixed public key for the unknown-key path to verify against (never matches).
fn decoy_key() -> VerifyingKey {
    static DECOY: std::sync::OnceLock<VerifyingKey> = std::sync::OnceLock::new();
    *DECOY.get_or_init(|| ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key())
}

fn signature_valid(key: &ApiKeyRecord, keys: &GatewayKeys, message: &[u8], signature: &[u8]) -> bool {
    match key.algorithm {
        SigningAlgorithm::Ed25519 => {
            let Some(public) = key
                .public_key
                .as_deref()
                .and_then(|p| BASE64URL_NOPAD.decode(p.as_bytes()).ok())
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            else {
                return false;
            };
            let Ok(sig) = <[u8; 64]>::try_from(signature) else { return false };
            // verify_strict refuses small-order keys and non-canonical signatures.
            public.verify_strict(message, &Signature::from_bytes(&sig)).is_ok()
        }
        SigningAlgorithm::HmacSha256 => {
            let Some(salt) = key.hmac_salt.as_deref().and_then(|s| HEXLOWER.decode(s.as_bytes()).ok()) else {
                return false;
            };
            let secret = keys.api_key_secret(key.id.as_str(), &salt);
            hmac_sha256(secret.as_bytes(), &[message]).verify_slice(signature).is_ok()
        }
    }
}

/// Limits how often one refusal is written to the audit chain: at most one entry per
/// API key and error code per minute, per gateway instance. Anyone who knows a key
/// id (not a secret) could otherwise flood the chain with bad signatures and hold
/// up every state change behind the audit head; the refusals are still answered and
/// counted in `/metrics`.
#[derive(Debug, Default)]
pub struct RefusalThrottle(std::sync::Mutex<std::collections::HashMap<(String, &'static str), Timestamp>>);

impl RefusalThrottle {
    /// Seconds between two audit entries for the same key and code.
    pub const INTERVAL: i64 = 60;

    /// Whether this refusal should be audited now.
    pub fn admit(&self, key_id: &str, code: &'static str, now: Timestamp) -> bool {
        let Ok(mut seen) = self.0.lock() else { return true }; // poisoned: audit (fail safe)
        if seen.len() > 10_000 {
            seen.retain(|_, at| now.seconds_since(*at) < Self::INTERVAL);
        }
        match seen.get(&(key_id.to_owned(), code)) {
            Some(at) if now.seconds_since(*at) < Self::INTERVAL => false,
            _ => {
                seen.insert((key_id.to_owned(), code), now);
                true
            }
        }
    }
}

/// Whether `ip` is inside one of the CIDR blocks. An empty list allows nothing.
#[must_use]
pub fn ip_allowed(allowlist: &[String], ip: IpAddr) -> bool {
    // IPv4-mapped IPv6 peers (dual-stack sockets) are checked as the IPv4 address.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    allowlist.iter().filter_map(|c| c.parse::<ipnet::IpNet>().ok()).any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_blocks_and_mapped_addresses() {
        let list = vec!["198.51.100.0/24".to_owned(), "2001:db8::/32".to_owned()];
        assert!(ip_allowed(&list, "198.51.100.200".parse().unwrap()));
        assert!(ip_allowed(&list, "::ffff:198.51.100.7".parse().unwrap()));
        assert!(ip_allowed(&list, "2001:db8::1".parse().unwrap()));
        assert!(!ip_allowed(&list, "198.51.101.1".parse().unwrap()));
        assert!(!ip_allowed(&[], "127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn string_to_sign_has_every_part() {
        let s = string_to_sign(
            "POST",
            "/v1/withdrawals",
            "",
            1_795_894_974,
            "n0nce-n0nce-n0nce",
            "order-1",
            b"{}",
        );
        assert_eq!(
            String::from_utf8(s).unwrap(),
            "countersign-request-v1\nPOST\n/v1/withdrawals\n\n1795894974\nn0nce-n0nce-n0nce\norder-1\n\
             44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
