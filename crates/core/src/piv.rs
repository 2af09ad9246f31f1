//! YubiKey PIV approvals: the second key type.
//!
//! A PIV key (ECDSA P-256 in slot 9c, PIN-always and touch-always) cannot carry
//! WebAuthn's clientDataJSON, so it signs a fixed-layout message instead:
//!
//! ```text
//! message = SHA-256("countersign:piv:v1" || 0x00 || digest || decision || challenge)
//! ```
//!
//! - `digest`: the operation's 32-byte canonical digest ([`Digest`]);
//! - `decision`: the ASCII word `approve` or `reject` (7 or 6 bytes);
//! - `challenge`: the gateway's 32-byte single-use challenge.
//!
//! Every part but the decision has a fixed length, so the total length tells the
//! decision apart: no two inputs share an encoding. The key signs `message` as a
//! prehashed digest (PIV GENERAL AUTHENTICATE over 32 bytes), and verifiers check it
//! with the enrolled public key. `docs/protocol.md` §PIV has a test vector.

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest as _, Sha256};

use crate::binding::Decision;
use crate::canonical::Digest;

/// Domain separation for PIV approval messages.
pub const PIV_DOMAIN: &[u8] = b"countersign:piv:v1";

/// The 32 bytes a PIV key signs for `decision` on the operation with `digest`,
/// answering `challenge`.
#[must_use]
pub fn message(digest: &Digest, decision: Decision, challenge: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(PIV_DOMAIN);
    h.update([0u8]);
    h.update(digest.as_bytes());
    h.update(decision.to_string().as_bytes());
    h.update(challenge);
    h.finalize().into()
}

/// Why a PIV approval does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PivError {
    /// The enrolled key is not an uncompressed or compressed P-256 point.
    #[error("the enrolled PIV key is not a P-256 public key")]
    BadPublicKey,
    /// The signature is not DER-encoded ECDSA.
    #[error("the PIV signature is not a DER-encoded ECDSA signature")]
    MalformedSignature,
    /// The signature does not verify for this operation, decision and challenge.
    #[error("the PIV signature does not verify for this operation, decision and challenge")]
    BadSignature,
}

/// Check a PIV approval: `signature` (DER ECDSA) by the key `public_key_sec1` over
/// [`message`]`(digest, decision, challenge)`.
///
/// # Errors
/// [`PivError`] naming what failed.
pub fn verify(
    public_key_sec1: &[u8],
    digest: &Digest,
    decision: Decision,
    challenge: &[u8; 32],
    signature: &[u8],
) -> Result<(), PivError> {
    let key =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key_sec1).map_err(|_| PivError::BadPublicKey)?;
    let sig = p256::ecdsa::Signature::from_der(signature).map_err(|_| PivError::MalformedSignature)?;
    key.verify_prehash(&message(digest, decision, challenge), &sig).map_err(|_| PivError::BadSignature)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;

    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_slice(&Sha256::digest(b"piv test key")).unwrap()
    }

    #[test]
    fn a_signature_counts_only_for_its_operation_decision_and_challenge() {
        let (digest, challenge) = (Digest::from_bytes([1; 32]), [2u8; 32]);
        let msg = message(&digest, Decision::Approve, &challenge);
        let sig: p256::ecdsa::Signature = key().sign_prehash(&msg).unwrap();
        let der = sig.to_der();
        let pk = key().verifying_key().to_sec1_point(false);
        let pk = pk.as_bytes();
        assert_eq!(verify(pk, &digest, Decision::Approve, &challenge, der.as_bytes()), Ok(()));
        let other = Digest::from_bytes([3; 32]);
        assert_eq!(
            verify(pk, &other, Decision::Approve, &challenge, der.as_bytes()),
            Err(PivError::BadSignature)
        );
        assert_eq!(
            verify(pk, &digest, Decision::Reject, &challenge, der.as_bytes()),
            Err(PivError::BadSignature)
        );
        assert_eq!(
            verify(pk, &digest, Decision::Approve, &[9; 32], der.as_bytes()),
            Err(PivError::BadSignature)
        );
        assert_eq!(
            verify(pk, &digest, Decision::Approve, &challenge, &der.as_bytes()[1..]),
            Err(PivError::MalformedSignature)
        );
        assert_eq!(
            verify(&pk[1..], &digest, Decision::Approve, &challenge, der.as_bytes()),
            Err(PivError::BadPublicKey)
        );
    }

    #[test]
    fn the_message_is_the_documented_hash() {
        // Recomputed independently in docs/vectors/verify.py.
        let msg = message(&Digest::from_bytes([0x11; 32]), Decision::Reject, &[0x22; 32]);
        let mut input = b"countersign:piv:v1\0".to_vec();
        input.extend([0x11; 32]);
        input.extend(b"reject");
        input.extend([0x22; 32]);
        assert_eq!(msg, <[u8; 32]>::from(Sha256::digest(&input)));
    }
}
