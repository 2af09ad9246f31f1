//! The authority chain: who may approve, and under which policy, derived from
//! signatures by hardware keys and verified offline from a pinned genesis hash —
//! never from the gateway's tables or its key.
//!
//! ```text
//! genesis = {version, rp, people, policy, api_keys, allowlist, created_at}
//!           signed by EVERY key it lists (the founding people prove each key)
//! link n  = {index n, prev: hash(link n-1 or genesis), operation (canonical), approvals,
//!            applied_at, public_key (enrolments), consent (a further key: the person's own)}
//!           approved under the state before it: the admin quorum of that state's policy
//!           (a revocation: any one admin), each approval an ordinary assertion over the
//!           operation ([`crate::binding`])
//! state(n) = fold(genesis, links 1..n): people and keys, every policy version, API
//!            keys, allowlist
//! ```
//!
//! Approvals bind the operation, not the chain's head: unrelated proposals do not
//! invalidate each other when one is applied first. They are counted against the
//! admins in force just before the link, so an approval by someone removed since
//! (or under a quorum raised since) no longer suffices.
//!
//! [`state::State`] folds; [`chain::Authority`] is the verifier's cache of a chain from
//! its pinned genesis, and checks releases decided under one of its heads.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::binding::ApprovalBinding;
use crate::canonical::{self, Digest};
use crate::certificate::{CertificateError, CertifiedApproval, RegistryCredential};
use crate::id::{AccountId, ApiKeyId, ApproverId, GroupName, NetworkId};
use crate::operation::{Destination, Role, Scope, SigningAlgorithm};
use crate::policy::Policy;
use crate::timestamp::Timestamp;

pub mod chain;
pub mod state;

pub use chain::{Authority, AuthorityDocument};
pub use state::State;

/// Domain prefix of the genesis hash.
pub const GENESIS_DOMAIN: &[u8] = b"countersign:genesis:v1";
/// Domain prefix of a link's hash.
pub const LINK_DOMAIN: &[u8] = b"countersign:link:v1";
/// What the `countersign` member of a genesis signature names instead of an
/// operation id ([`ApprovalBinding::for_document`]).
pub const GENESIS_NAME: &str = "genesis";

/// The WebAuthn relying party every assertion in the chain is scoped to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelyingParty {
    /// The rp id (`rpIdHash` = SHA-256 of it).
    pub id: String,
    /// Origins accepted in clientDataJSON.
    pub origins: Vec<String>,
}

/// A person and their active keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub id: ApproverId,
    /// Their name as colleagues know it.
    pub display_name: String,
    pub roles: BTreeSet<Role>,
    pub groups: BTreeSet<GroupName>,
    /// Active keys; a person left with none stays listed but cannot approve.
    pub keys: Vec<RegistryCredential>,
}

/// An API key the chain admits as an initiator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyGrant {
    pub key_id: ApiKeyId,
    /// The person responsible for it.
    pub owner: ApproverId,
    pub algorithm: SigningAlgorithm,
    /// Ed25519 public key, base64url (absent for HMAC keys, whose secret only the
    /// gateway holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    pub scopes: BTreeSet<Scope>,
}

/// One allowlisted destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistEntry {
    pub account: AccountId,
    pub network: NetworkId,
    pub destination: Destination,
    pub label: String,
    /// When it was listed (the policy's cool-off runs from here).
    pub added_at: Timestamp,
}

/// The first state, signed by every key it lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Format version, 1.
    pub version: u32,
    pub rp: RelyingParty,
    /// The founding people (admins, and approvers enrolled before genesis).
    pub people: Vec<Person>,
    /// The policy in force from genesis.
    pub policy: Policy,
    /// API keys that exist at genesis.
    pub api_keys: Vec<ApiKeyGrant>,
    /// Destinations allowlisted at genesis.
    pub allowlist: Vec<AllowlistEntry>,
    pub created_at: Timestamp,
}

/// The genesis with one signature per key it lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedGenesis {
    pub genesis: Genesis,
    /// Assertions whose `countersign` member is
    /// [`ApprovalBinding::for_document`]`("genesis", hash)`.
    pub signatures: Vec<CertifiedApproval>,
}

/// One change of authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// 1 for the first link after genesis.
    pub index: u64,
    /// Hex hash of the previous link (of the genesis for link 1).
    pub prev: String,
    /// The administrative operation, canonical form (RFC 8785 text).
    pub operation: String,
    /// The admins' approvals of that operation.
    pub approvals: Vec<CertifiedApproval>,
    /// When it took effect (before the operation expired).
    pub applied_at: Timestamp,
    /// For an enrolment: the key, base64url SEC1 point, whose SHA-256 the operation names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// For a further key of a person who holds keys: their own approval of the same
    /// operation with one of those keys (nobody adds a key to someone else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<CertifiedApproval>,
}

/// A position in the chain: index 0 is the genesis.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub index: u64,
    /// Hex hash of the genesis (index 0) or of link `index`.
    pub hash: String,
}

fn domain_hash<T: Serialize>(domain: &[u8], value: &T) -> Result<Digest, AuthorityError> {
    let jcs = canonical::jcs(value).map_err(|e| AuthorityError::Malformed(e.to_string()))?;
    let mut h = Sha256::new();
    h.update(domain);
    h.update([0]);
    h.update(&jcs);
    Ok(Digest::from_bytes(h.finalize().into()))
}

impl Genesis {
    /// `SHA-256("countersign:genesis:v1" || 0x00 || JCS(genesis))`: what everyone pins.
    ///
    /// # Errors
    /// [`AuthorityError::Malformed`] if it cannot be encoded.
    pub fn hash(&self) -> Result<Digest, AuthorityError> {
        domain_hash(GENESIS_DOMAIN, self)
    }

    /// The `countersign` member each founding key signs.
    ///
    /// # Errors
    /// As [`Genesis::hash`].
    pub fn binding(&self) -> Result<ApprovalBinding, AuthorityError> {
        Ok(ApprovalBinding::for_document(GENESIS_NAME, &self.hash()?))
    }
}

impl Link {
    /// `SHA-256("countersign:link:v1" || 0x00 || JCS(link))`.
    ///
    /// # Errors
    /// [`AuthorityError::Malformed`] if it cannot be encoded.
    pub fn hash(&self) -> Result<Digest, AuthorityError> {
        domain_hash(LINK_DOMAIN, self)
    }
}

/// Why a genesis, a link or a release under the chain is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// Not a genesis, link or authority document (syntax, members, encoding).
    #[error("not an authority document: {0}")]
    Malformed(String),
    /// An unknown format version.
    #[error("unsupported genesis version {0}")]
    Version(u32),
    /// The genesis is not the one pinned.
    #[error("the genesis hash is {found}, not the pinned {pinned}")]
    GenesisMismatch {
        /// What the verifier pins.
        pinned: String,
        /// What the document hashes to.
        found: String,
    },
    /// The genesis contradicts itself (a person or key twice, no admin, a bad key or policy).
    #[error("the genesis is not valid: {0}")]
    GenesisInvalid(String),
    /// A key the genesis lists did not sign it.
    #[error("{approver}'s key {credential} has not signed the genesis")]
    GenesisUnsigned {
        /// Whose key.
        approver: String,
        /// Which key.
        credential: String,
    },
    /// A genesis signature does not verify, or is by a key the genesis does not list.
    #[error("genesis signature {index}: {source}")]
    GenesisSignature {
        /// Position in `signatures`.
        index: usize,
        /// Why.
        source: CertificateError,
    },
    /// A link is not the next one.
    #[error("expected link {expected}, found link {found}")]
    LinkIndex {
        /// The next index.
        expected: u64,
        /// What came.
        found: u64,
    },
    /// `prev` is not the hash of the link before.
    #[error("link {0} does not follow the head before it")]
    BrokenLink(u64),
    /// A link the verifier already holds, with different content: a rewritten history.
    #[error("link {0} differs from the one already verified (a rewritten chain)")]
    Fork(u64),
    /// The link's operation does not decode, or is not administrative.
    #[error("link {index}: {problem}")]
    BadOperation {
        /// Link index.
        index: u64,
        /// What is wrong.
        problem: String,
    },
    /// An approval of a link does not verify under the state before it.
    #[error("link {index}: {source}")]
    Approval {
        /// Link index.
        index: u64,
        /// Why.
        source: CertificateError,
    },
    /// The link's approvals do not complete the admin quorum in force before it.
    #[error("link {index}: the approvals do not complete the admin quorum: {detail}")]
    QuorumNotMet {
        /// Link index.
        index: u64,
        /// The tally.
        detail: String,
    },
    /// A further key for a person who holds keys, without their key's consent.
    #[error("link {index}: a further key for {approver} needs their consent with a key they hold")]
    ConsentMissing {
        /// Link index.
        index: u64,
        /// Whose key.
        approver: String,
    },
    /// An operation the chain already applied, appended again.
    #[error("link {index}: operation {operation} was already applied")]
    Replayed {
        /// Link index.
        index: u64,
        /// The operation id.
        operation: String,
    },
    /// An approver's role or group changed since the release's head so that the
    /// approvals no longer complete its quorum.
    #[error("the approvals no longer complete the quorum under the newest state: {0}")]
    RolesChanged(String),
    /// The release is one the chain's policy refuses outright (a deny rule, or a
    /// destination not allowlisted where the policy denies those).
    #[error("the chain's policy refuses this operation: {0}")]
    Denied(String),
    /// The change cannot apply to the state before it.
    #[error("link {index}: {problem}")]
    BadChange {
        /// Link index.
        index: u64,
        /// What is wrong.
        problem: String,
    },
    /// A release was decided under a head this verifier does not hold.
    #[error("head {index} ({hash}) is not in the verified chain")]
    UnknownHead {
        /// Its index.
        index: u64,
        /// Its hash.
        hash: String,
    },
    /// The release names no head of the authority chain.
    #[error("the release names no authority head")]
    Missing,
    /// The operation was judged by a policy version the chain does not hold at its head.
    #[error("policy version {0} is not in the chain at the release's head")]
    UnknownPolicy(u32),
    /// An approver of the release was revoked by a link after its head.
    #[error("{approver}'s key {credential} was revoked by a later link")]
    RevokedSince {
        /// Who.
        approver: String,
        /// Which key.
        credential: String,
    },
    /// The policy now in force demands more than the release's quorum.
    #[error("policy version {0}, now in force, demands more approvals than the release carries")]
    FloorRaised(u32),
    /// The API key that initiated the operation is not one the chain admits.
    #[error("API key {0} is not in the authority chain (or has another owner there)")]
    UnknownApiKey(String),
}

impl AuthorityError {
    /// A stable code, e.g. `authority.quorum_not_met`. Approval failures carry the
    /// certificate check's name (`authority.unknown_credential`, `authority.bad_signature`, …).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "authority.malformed",
            Self::Version(_) => "authority.unsupported_version",
            Self::GenesisMismatch { .. } => "authority.genesis_mismatch",
            Self::GenesisInvalid(_) => "authority.genesis_invalid",
            Self::GenesisUnsigned { .. } => "authority.genesis_unsigned",
            Self::GenesisSignature { .. } => "authority.genesis_signature",
            Self::LinkIndex { .. } => "authority.link_index",
            Self::BrokenLink(_) => "authority.broken_link",
            Self::Fork(_) => "authority.fork",
            Self::BadOperation { .. } => "authority.bad_operation",
            Self::Approval { source, .. } => match source {
                CertificateError::UnknownCredential { .. } => "authority.unknown_credential",
                CertificateError::NotAnApprover { .. } => "authority.not_an_admin",
                CertificateError::BadSignature { .. } => "authority.bad_signature",
                CertificateError::Binding { .. } => "authority.binding",
                CertificateError::DuplicateApprover(_) => "authority.duplicate_approver",
                CertificateError::InitiatorApproved(_) => "authority.initiator_approved",
                _ => "authority.bad_approval",
            },
            Self::QuorumNotMet { .. } => "authority.quorum_not_met",
            Self::ConsentMissing { .. } => "authority.consent_missing",
            Self::Replayed { .. } => "authority.replayed",
            Self::RolesChanged(_) => "authority.roles_changed",
            Self::Denied(_) => "authority.denied",
            Self::BadChange { .. } => "authority.bad_change",
            Self::UnknownHead { .. } => "authority.unknown_head",
            Self::Missing => "authority.missing",
            Self::UnknownPolicy(_) => "authority.unknown_policy",
            Self::RevokedSince { .. } => "authority.revoked_since",
            Self::FloorRaised(_) => "authority.floor_raised",
            Self::UnknownApiKey(_) => "authority.unknown_api_key",
        }
    }
}
