//! Operations: every risky action that may need people to approve it.
//!
//! An [`Operation`] is the envelope every approver signs: the gateway-assigned id,
//! creation and expiry times, the policy version that judged it, who initiated it,
//! and the [`Action`] itself. Everything an approver must see to decide is in here,
//! and everything in here is covered by the digest (see [`crate::canonical`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::error::{Error, Result};
pub use crate::id::{AccountId, ApiKeyId, ApproverId, AssetCode, GroupName, NetworkId, OperationId};
use crate::policy::Policy;
use crate::timestamp::Timestamp;

pub use crate::kind::OperationKind;
use crate::text::check_address;
pub use crate::text::{MAX_ADDRESS_LEN, MAX_TEXT_LEN, check_text};

/// One operation as approvers see and sign it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// Assigned by the gateway.
    pub id: OperationId,
    /// When the gateway received it.
    pub created_at: Timestamp,
    /// From this instant on (inclusive) no decision counts and it is never released.
    pub expires_at: Timestamp,
    /// The version of the policy that judged it.
    pub policy_version: u32,
    /// Who asked for it.
    pub initiator: Initiator,
    /// What it does.
    pub action: Action,
}

/// Who asked for an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Initiator {
    /// A trading bot or back-office system using an API key.
    ApiKey {
        /// The key that signed the request.
        key_id: ApiKeyId,
        /// The person responsible for the key; never counts as an approver.
        owner: ApproverId,
        /// The address the request came from, as the gateway saw it.
        source_ip: IpAddr,
    },
    /// An approver or admin acting through the desktop app or CLI.
    Approver {
        /// The person who proposed it; never counts as an approver of it.
        approver: ApproverId,
    },
}

impl Initiator {
    /// The person who must not approve this operation.
    #[must_use]
    pub fn responsible_person(&self) -> &ApproverId {
        match self {
            Initiator::ApiKey { owner, .. } => owner,
            Initiator::Approver { approver } => approver,
        }
    }
}

/// What an operation does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "details", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Move funds off the exchange.
    Withdrawal(Withdrawal),
    /// Add a destination to an account's allowlist.
    AllowlistAdd(AllowlistAdd),
    /// Replace the policy.
    PolicyUpdate(PolicyUpdate),
    /// Add an approver, or a hardware key to an approver.
    ApproverEnroll(ApproverEnroll),
    /// Remove an approver or one of their keys.
    ApproverRevoke(ApproverRevoke),
    /// Create an API key.
    ApiKeyCreate(ApiKeyCreate),
    /// Lift a freeze of all API keys.
    Unfreeze(Unfreeze),
}

impl Action {
    /// This action's kind.
    #[must_use]
    pub fn kind(&self) -> OperationKind {
        match self {
            Action::Withdrawal(_) => OperationKind::Withdrawal,
            Action::AllowlistAdd(_) => OperationKind::AllowlistAdd,
            Action::PolicyUpdate(_) => OperationKind::PolicyUpdate,
            Action::ApproverEnroll(_) => OperationKind::ApproverEnroll,
            Action::ApproverRevoke(_) => OperationKind::ApproverRevoke,
            Action::ApiKeyCreate(_) => OperationKind::ApiKeyCreate,
            Action::Unfreeze(_) => OperationKind::Unfreeze,
        }
    }
}

/// A transfer of funds to an address outside the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    /// The account the funds leave.
    pub account: AccountId,
    pub asset: AssetCode,
    /// The network it is sent on.
    pub network: NetworkId,
    /// Quantity in asset units; greater than zero.
    pub amount: Amount,
    /// Where it goes.
    pub destination: Destination,
    /// Its value in the policy's reference currency when the gateway received it.
    pub reference_value: ReferenceValue,
}

/// A destination on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// The address as the network writes it (printable ASCII, no spaces).
    pub address: String,
    /// Memo / destination tag for networks that need one (XRP, XLM, EOS, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
}

/// An amount in a reference currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceValue {
    /// ISO 4217-style code, e.g. `USD`.
    pub currency: AssetCode,
    /// The value.
    pub amount: Amount,
}

/// Add an address to an account's allowlist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistAdd {
    /// The account whose allowlist grows.
    pub account: AccountId,
    /// The network of the address.
    pub network: NetworkId,
    /// The address.
    pub destination: Destination,
    /// What people call it ("Cold storage 3").
    pub label: String,
}

/// Replace the policy with a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    /// The complete new policy; its `version` must be greater than the current one.
    pub policy: Policy,
}

/// Roles a person can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    // Declared in alphabetical order: sets of roles serialise in `Ord` order, and the
    // protocol sorts sets by their UTF-8 strings.
    /// Manages approvers, keys, API keys, allowlists and policy (through operations).
    Admin,
    /// Decides on operations.
    Approver,
}

/// The kind of hardware key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// FIDO2 / WebAuthn credential.
    Fido2,
    /// YubiKey PIV slot key.
    Piv,
}

/// A hardware key being enrolled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSummary {
    /// Credential id, base64url without padding.
    pub credential_id: String,
    /// FIDO2 or PIV.
    pub key_kind: KeyKind,
    /// The authenticator model's AAGUID (FIDO2), lowercase hyphenated; absent for PIV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aaguid: Option<String>,
    /// SHA-256 of the credential public key (COSE or SubjectPublicKeyInfo), lowercase hex.
    pub public_key_sha256: String,
    /// What the approver calls this key ("blue YubiKey").
    pub label: String,
}

/// Enroll a person, or a further key for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverEnroll {
    /// The person.
    pub approver: ApproverId,
    /// Their name as colleagues know it.
    pub display_name: String,
    /// Roles granted (sorted set).
    pub roles: BTreeSet<Role>,
    /// Groups joined (sorted set).
    pub groups: BTreeSet<GroupName>,
    /// The key being enrolled.
    pub credential: CredentialSummary,
}

/// Remove a person, or one of their keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverRevoke {
    /// The person.
    pub approver: ApproverId,
    /// One key (base64url id); absent revokes the person and all their keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// Why.
    pub reason: String,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read operations and balances.
    Read,
    /// Submit withdrawals.
    Withdraw,
}

/// How an API key signs requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SigningAlgorithm {
    /// Ed25519 signatures; the gateway stores only the public key. Preferred.
    Ed25519,
    /// HMAC-SHA256 with a shared secret, for compatibility.
    HmacSha256,
}

/// Create an API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCreate {
    /// The new key's id.
    pub key_id: ApiKeyId,
    /// The person responsible for it.
    pub owner: ApproverId,
    /// What it is for ("market maker 2, Frankfurt").
    pub label: String,
    /// What it may do (sorted set).
    pub scopes: BTreeSet<Scope>,
    /// How it signs. Only [`SigningAlgorithm::Ed25519`] through the quorum: an HMAC
    /// secret would have to travel to the bot, while an Ed25519 key pair is made
    /// where the bot runs and only its public half is approved.
    pub algorithm: SigningAlgorithm,
    /// The Ed25519 public key, base64url without padding (32 bytes). Approvers sign
    /// exactly the key that will be able to withdraw.
    pub public_key: String,
    /// Source addresses allowed, as CIDR blocks (sorted set; empty allows none).
    pub ip_allowlist: BTreeSet<String>,
    /// Refuse single withdrawals worth more than this (reference currency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reference_value: Option<Amount>,
    /// When it stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// Lift the freeze on all API keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unfreeze {
    /// When the freeze being lifted began: an approval to lift one freeze never
    /// lifts a later one.
    pub freeze_started: Timestamp,
    /// Why it is safe again.
    pub reason: String,
}

fn check_b64url(field: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 1366
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(Error::InvalidOperation(format!("{field}: base64url without padding"))) }
}

/// Canonical base64url (no padding) of a valid Ed25519 point.
fn check_ed25519_public_key(field: &str, s: &str) -> Result<()> {
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(s.as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .filter(|b| data_encoding::BASE64URL_NOPAD.encode(b) == s);
    match bytes.map(|b| ed25519_dalek::VerifyingKey::from_bytes(&b)) {
        Some(Ok(_)) => Ok(()),
        _ => Err(Error::InvalidOperation(format!("{field}: an Ed25519 public key, 32 bytes in base64url"))),
    }
}

fn check_lower_hex(field: &str, s: &str, len: usize) -> Result<()> {
    if s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Error::InvalidOperation(format!("{field}: {len} lowercase hex digits")))
    }
}

fn check_aaguid(s: &str) -> Result<()> {
    let parts: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if parts.len() == 5 && parts.iter().zip(lens).all(|(p, n)| check_lower_hex("aaguid", p, n).is_ok()) {
        Ok(())
    } else {
        Err(Error::InvalidOperation("credential.aaguid: lowercase hyphenated UUID".into()))
    }
}

/// A CIDR block in its one canonical spelling: network address (host bits zero),
/// `/prefix`, IPv6 in RFC 5952 form (`198.51.100.0/24`, `2001:db8::/32`).
fn check_cidr(s: &str) -> Result<()> {
    match s.parse::<ipnet::IpNet>() {
        Ok(net) if net.trunc() == net && net.to_string() == s => Ok(()),
        _ => Err(Error::InvalidOperation(format!(
            "ip_allowlist: {s:?} is not a canonical CIDR block such as 198.51.100.0/24"
        ))),
    }
}

fn check_destination(d: &Destination) -> Result<()> {
    check_address("destination.address", &d.address)?;
    if let Some(memo) = &d.memo {
        check_address("destination.memo", memo)?;
    }
    Ok(())
}

impl Operation {
    /// The kind of action.
    #[must_use]
    pub fn kind(&self) -> OperationKind {
        self.action.kind()
    }

    /// The withdrawal, if this is one.
    #[must_use]
    pub fn withdrawal(&self) -> Option<&Withdrawal> {
        match &self.action {
            Action::Withdrawal(w) => Some(w),
            _ => None,
        }
    }

    /// Check the rules the type system cannot: positive amounts, text lengths,
    /// address alphabet, expiry after creation. Decoding runs this, and the gateway
    /// runs it before it stores anything.
    ///
    /// # Errors
    /// [`Error::InvalidOperation`] naming the first offending field.
    pub fn validate(&self) -> Result<()> {
        if self.expires_at <= self.created_at {
            return Err(Error::InvalidOperation("expires_at must be after created_at".into()));
        }
        match &self.action {
            Action::Withdrawal(w) => {
                if w.amount.is_zero() {
                    return Err(Error::InvalidOperation("amount must be greater than zero".into()));
                }
                check_destination(&w.destination)
            }
            Action::AllowlistAdd(a) => {
                check_destination(&a.destination)?;
                check_text("label", &a.label)
            }
            Action::PolicyUpdate(p) => p.policy.validate(),
            Action::ApproverEnroll(e) => {
                check_text("display_name", &e.display_name)?;
                check_text("credential.label", &e.credential.label)?;
                check_b64url("credential.credential_id", &e.credential.credential_id)?;
                check_lower_hex("credential.public_key_sha256", &e.credential.public_key_sha256, 64)?;
                if let Some(aaguid) = &e.credential.aaguid {
                    check_aaguid(aaguid)?;
                }
                if e.roles.is_empty() {
                    return Err(Error::InvalidOperation("roles: at least one role".into()));
                }
                Ok(())
            }
            Action::ApproverRevoke(r) => {
                if let Some(c) = &r.credential_id {
                    check_b64url("credential_id", c)?;
                }
                check_text("reason", &r.reason)
            }
            Action::ApiKeyCreate(k) => {
                check_text("label", &k.label)?;
                if k.algorithm != SigningAlgorithm::Ed25519 {
                    return Err(Error::InvalidOperation(
                        "algorithm: only ed25519 keys are created through the quorum \
                         (an HMAC secret would have to travel to the bot)"
                            .into(),
                    ));
                }
                check_ed25519_public_key("public_key", &k.public_key)?;
                if k.scopes.is_empty() {
                    return Err(Error::InvalidOperation("scopes: at least one scope".into()));
                }
                k.ip_allowlist.iter().try_for_each(|c| check_cidr(c))
            }
            Action::Unfreeze(u) => check_text("reason", &u.reason),
        }
    }
}
