//! Decoy login challenges, so `POST /v1/login/start` does not tell who exists.
//!
//! A login for a person who is unknown, revoked or without an active key is
//! answered like a real one: `200` with a stored, single-use ceremony and WebAuthn
//! options of the same shape, whose allowed credential ids are derived from the
//! gateway's secret and the name (the same on every call, as a real person's are,
//! and as long as the keys enrolled here). Finishing a decoy always fails, with the
//! code a real ceremony gives for the same response, checked in the same order as
//! `webauthn-rs` checks a real one: an unknown credential, then the client data's
//! type, challenge and origin, then the authenticator data's rpIdHash, presence
//! and verification flags, and last the signature (which a decoy never accepts).
//!
//! Known limits: a decoy answers without reading any credential, so it may be a
//! little faster than a real login/start; the rate limits per source and per person
//! apply to both alike.

use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use webauthn_rs::prelude::{PublicKeyCredential, RequestChallengeResponse, WebauthnError};
use webauthn_rs_proto::{
    AllowCredentials, PublicKeyCredentialHints, PublicKeyCredentialRequestOptions,
    RequestAuthenticationExtensions, UserVerificationPolicy,
};

use crate::AppState;
use crate::error::{Error, Result};
use crate::keys::random_bytes;

/// A decoy ceremony's stored state (in place of `webauthn-rs`'s).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decoy {
    /// The challenge sent, base64url.
    pub decoy_challenge: String,
    /// The credential ids offered, base64url.
    pub decoy_credentials: Vec<String>,
}

/// Credential id length used when no key is enrolled yet (a YubiKey's).
const DEFAULT_CREDENTIAL_ID_LEN: usize = 64;

/// Options and state for a decoy login of `person`. `credential_id_len` is the
/// length of the credential ids enrolled here, so decoys look like them.
///
/// # Errors
/// When the OS has no randomness.
pub fn start(
    state: &AppState,
    person: &str,
    credential_id_len: Option<usize>,
) -> Result<(RequestChallengeResponse, Decoy)> {
    let challenge = random_bytes::<32>().map_err(Error::internal)?;
    let len = credential_id_len.unwrap_or(DEFAULT_CREDENTIAL_ID_LEN).clamp(16, 1023);
    let credential = state.keys.decoy_bytes(b"countersign:decoy-credential:v1", person.as_bytes(), len);
    let options = RequestChallengeResponse {
        public_key: PublicKeyCredentialRequestOptions {
            challenge: challenge.to_vec(),
            timeout: Some(crate::authenticator_timeout_ms(&state.config)),
            rp_id: state.config.webauthn.rp_id.clone(),
            allow_credentials: vec![AllowCredentials {
                type_: "public-key".into(),
                id: credential.clone(),
                transports: None,
            }],
            user_verification: UserVerificationPolicy::Required,
            hints: Some(vec![PublicKeyCredentialHints::SecurityKey, PublicKeyCredentialHints::ClientDevice]),
            extensions: Some(RequestAuthenticationExtensions {
                appid: None,
                uvm: Some(true),
                hmac_get_secret: None,
            }),
        },
        mediation: None,
    };
    let decoy = Decoy {
        decoy_challenge: BASE64URL_NOPAD.encode(&challenge),
        decoy_credentials: vec![BASE64URL_NOPAD.encode(&credential)],
    };
    Ok((options, decoy))
}

/// The refusal a real ceremony would give this response (a decoy never succeeds),
/// as the `webauthn-rs` error, so the gateway maps it to the same code and message
/// as a real one (`approvers::webauthn_error`).
#[must_use]
pub fn finish(state: &AppState, decoy: &Decoy, response: &PublicKeyCredential) -> WebauthnError {
    let raw_id = BASE64URL_NOPAD.encode(response.raw_id.as_ref());
    if !decoy.decoy_credentials.contains(&raw_id) {
        return WebauthnError::CredentialNotFound;
    }
    let client_data: serde_json::Value =
        serde_json::from_slice(response.response.client_data_json.as_ref()).unwrap_or_default();
    if client_data["type"] != "webauthn.get" {
        return WebauthnError::InvalidClientDataType;
    }
    if client_data["challenge"].as_str() != Some(decoy.decoy_challenge.as_str()) {
        return WebauthnError::MismatchedChallenge;
    }
    if client_data["origin"].as_str() != Some(state.config.webauthn.origin.as_str()) {
        return WebauthnError::InvalidRPOrigin;
    }
    let auth_data: &[u8] = response.response.authenticator_data.as_ref();
    let rp_id_hash = Sha256::digest(state.config.webauthn.rp_id.as_bytes());
    if auth_data.len() < 37 || auth_data[..32] != rp_id_hash[..] {
        return WebauthnError::InvalidRPIDHash;
    }
    if auth_data[32] & 0x01 == 0 {
        return WebauthnError::UserNotPresent;
    }
    if auth_data[32] & 0x04 == 0 {
        return WebauthnError::UserNotVerified;
    }
    WebauthnError::SignatureInvalid
}
