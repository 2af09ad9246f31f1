//! # countersign-core
//!
//! The rules of Countersign, in one place a reviewer can read: what an operation is,
//! how it is encoded and digested, how an approver's signature is bound to exactly
//! one operation and decision, how policy judges an operation, and how decisions add
//! up to a quorum.
//!
//! This crate is pure: no I/O, no async, no clock, no randomness (Ed25519 signing
//! takes the key as a parameter). Time (`now`) is a
//! parameter of every function that needs it (`clippy.toml` bans reading the clock).
//!
//! | module | what it holds |
//! |---|---|
//! | [`operation`] | [`Operation`], [`Action`] and the fields approvers see |
//! | [`canonical`] | RFC 8785 encoding, strict decoding, [`Digest`], [`Fingerprint`] |
//! | [`binding`] | the `countersign` clientDataJSON member, [`Decision`] |
//! | [`policy`] | the [`Policy`] document and its validation |
//! | [`verdict`] | [`evaluate`]: an action judged under a policy, its [`Verdict`] and disposition |
//! | [`rules`] | who may decide what ([`rules::may_decide`]), which decisions still count |
//! | [`quorum`] | [`tally`] of verified decisions, [`Roster`] |
//! | [`risk`] | risk signals about the initiating API key, [`risk::assess`] |
//! | [`piv`] | the message a YubiKey PIV key signs for an approval, and its check |
//! | [`certificate`] | quorum certificates, the approver registry, offline [`certificate::verify_quorum`] |
//! | [`release`] | the signed release document and settlement's [`release::verify_release`] |
//! | [`audit`] | the hash-chained audit log, signed checkpoints, [`audit::verify_export`] |
//! | [`amount`], [`timestamp`], [`id`], [`kind`], [`decision`], [`text`] | exact decimals, UTC seconds, identifiers, operation kinds, decisions, text limits |
//!
//! The wire format is specified in `docs/protocol.md`, with test vectors under
//! `docs/vectors/` that this crate's tests check.
//!
//! **WARNING:** [`canonical::decode`] is the only way to turn bytes into an
//! [`Operation`] that will be signed or verified. Do not deserialize operations with
//! `serde_json` directly: that skips the canonical-form, duplicate-key and
//! trailing-data checks, and two parties could then disagree on what was signed.

pub mod amount;
pub mod audit;
pub mod authority;
pub mod binding;
pub mod canonical;
pub mod certificate;
pub mod decision;
pub mod error;
pub mod id;
pub mod kind;
pub mod operation;
pub mod piv;
pub mod policy;
pub mod quorum;
pub mod release;
pub mod risk;
pub mod rules;
pub mod text;
pub mod timestamp;
pub mod verdict;

pub use amount::Amount;
pub use binding::{ApprovalBinding, Decision};
pub use canonical::{Digest, Fingerprint};
pub use error::{Error, Result};
pub use operation::{Action, Initiator, Operation, OperationKind};
pub use policy::Policy;
pub use quorum::{Roster, Tally, tally};
pub use timestamp::Timestamp;
pub use verdict::{Verdict, evaluate};

/// The AAGUID of `countersign-softkey`, the software authenticator for tests and the
/// demo. The gateway marks every credential with this AAGUID as **software** and
/// every client shows a permanent warning while one is in use. It is public so that
/// nobody can mistake a software key for hardware; it is not a secret and proves
/// nothing by itself (attestation does).
pub const SOFTWARE_AUTHENTICATOR_AAGUID: &str = "14123231-bc31-4891-9a01-dba1ed3c6e53";

/// The pin of a gateway's TLS key, as enrollment links carry it and clients check
/// it: `sha256/` + base64url (no padding) of SHA-256 over the DER
/// SubjectPublicKeyInfo.
#[must_use]
pub fn spki_pin(spki_der: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256/{}", data_encoding::BASE64URL_NOPAD.encode(&sha2::Sha256::digest(spki_der)))
}
