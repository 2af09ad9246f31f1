//! The fold: the state at the genesis, and the state after each link.

use std::collections::{BTreeMap, BTreeSet};

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use sha2::{Digest as _, Sha256};

use super::{
    AllowlistEntry, ApiKeyGrant, AuthorityError, GENESIS_NAME, Head, Link, Person, RelyingParty,
    SignedGenesis,
};
use crate::binding::Decision;
use crate::canonical;
use crate::certificate::{
    CertificateError, CertifiedApproval, Registry, RegistryApprover, RegistryCredential, count_approvals,
    public_key, verify_assertion, verify_bound_assertion,
};
use crate::id::{ApiKeyId, ApproverId};
use crate::operation::{Action, Operation, Role};
use crate::policy::Policy;
use crate::quorum::{Roster, Tally, tally};
use crate::timestamp::Timestamp;

/// Who may approve, under which policies, with which API keys and destinations, at
/// one head of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Where in the chain this is.
    pub head: Head,
    pub rp: RelyingParty,
    /// Everyone not revoked, by id, with their active keys.
    pub people: BTreeMap<ApproverId, Person>,
    /// People revoked (never enrolled again under the same id).
    pub revoked: BTreeSet<ApproverId>,
    /// Every credential id and public key ever listed (never listed again: a
    /// revoked key stays revoked, and one key is never two people).
    pub keys_ever: BTreeSet<String>,
    /// Every operation applied (each applies once).
    pub applied: BTreeSet<String>,
    /// The policy in force.
    pub policy: Policy,
    /// Every policy version so far (the one in force included).
    pub policies: BTreeMap<u32, Policy>,
    pub api_keys: BTreeMap<ApiKeyId, ApiKeyGrant>,
    pub allowlist: Vec<AllowlistEntry>,
    /// When the last link took effect (the genesis's creation for the genesis).
    pub applied_at: Timestamp,
}

fn invalid(problem: impl Into<String>) -> AuthorityError {
    AuthorityError::GenesisInvalid(problem.into())
}

fn check_key(key: &RegistryCredential) -> bool {
    // One spelling only: the 65-byte uncompressed point, in base64url that
    // round-trips (so that one key cannot be listed twice under two spellings).
    public_key(key).is_some()
        && BASE64URL_NOPAD
            .decode(key.public_key.as_bytes())
            .is_ok_and(|b| b.len() == 65 && b[0] == 4 && BASE64URL_NOPAD.encode(&b) == key.public_key)
}

/// What a key is remembered by: its id and its public key, each never listed twice.
fn key_marks(k: &RegistryCredential) -> [String; 2] {
    [format!("id:{}", k.credential_id), format!("pk:{}", k.public_key)]
}

impl State {
    /// Verify a signed genesis against the pinned hash (lowercase hex) and build the
    /// first state: every key it lists must have signed it, and nothing else may have.
    ///
    /// # Errors
    /// `authority.genesis_*`, `authority.unsupported_version`.
    pub fn from_genesis(pinned: &str, signed: &SignedGenesis) -> Result<State, AuthorityError> {
        let g = &signed.genesis;
        let hash = g.hash()?;
        if hash.to_hex() != pinned {
            return Err(AuthorityError::GenesisMismatch { pinned: pinned.to_owned(), found: hash.to_hex() });
        }
        let (people, api_keys) = structure(g)?;
        // Every key signs the genesis, once; no other signature is accepted.
        let mut signed_by = BTreeSet::new();
        for (index, s) in signed.signatures.iter().enumerate() {
            let fail = |source| AuthorityError::GenesisSignature { index, source };
            let key = people
                .get(&s.approver)
                .and_then(|p: &Person| p.keys.iter().find(|k| k.credential_id == s.credential_id))
                .ok_or_else(|| {
                    fail(CertificateError::UnknownCredential {
                        index,
                        approver: s.approver.to_string(),
                        credential: s.credential_id.clone(),
                    })
                })?;
            verify_bound_assertion(index, s, key, (&g.rp.id, &g.rp.origins), |b| {
                b.check_document(GENESIS_NAME, &hash, Decision::Approve)
            })
            .map_err(fail)?;
            if !signed_by.insert(s.credential_id.as_str()) {
                return Err(fail(CertificateError::DuplicateApprover(s.approver.to_string())));
            }
        }
        for p in &g.people {
            for k in &p.keys {
                if !signed_by.contains(k.credential_id.as_str()) {
                    return Err(AuthorityError::GenesisUnsigned {
                        approver: p.id.to_string(),
                        credential: k.credential_id.clone(),
                    });
                }
            }
        }
        let keys_ever = people.values().flat_map(|p| &p.keys).flat_map(key_marks).collect();
        Ok(State {
            head: Head { index: 0, hash: hash.to_hex() },
            rp: g.rp.clone(),
            people,
            revoked: BTreeSet::new(),
            keys_ever,
            applied: BTreeSet::new(),
            policy: g.policy.clone(),
            policies: BTreeMap::from([(g.policy.version, g.policy.clone())]),
            api_keys,
            allowlist: g.allowlist.clone(),
            applied_at: g.created_at,
        })
    }

    /// The policy in force.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The approver registry of this state (people with at least one key), for
    /// [`crate::certificate::verify_quorum`].
    #[must_use]
    pub fn registry(&self) -> Registry {
        Registry {
            version: 1,
            rp_id: self.rp.id.clone(),
            origins: self.rp.origins.clone(),
            issued_at: self.applied_at,
            approvers: self
                .people
                .values()
                .filter(|p| !p.keys.is_empty())
                .map(|p| RegistryApprover {
                    id: p.id.clone(),
                    roles: p.roles.clone(),
                    groups: p.groups.clone(),
                    credentials: p.keys.clone(),
                })
                .collect(),
        }
    }

    /// Whether `approver` holds the key `credential` here.
    #[must_use]
    pub fn holds_key(&self, approver: &ApproverId, credential: &str) -> bool {
        self.people.get(approver).is_some_and(|p| p.keys.iter().any(|k| k.credential_id == credential))
    }

    /// Verify `link` as the next one and return the state after it.
    ///
    /// # Errors
    /// `authority.link_index`, `authority.broken_link`, `authority.bad_operation`,
    /// the approval codes, `authority.quorum_not_met`, `authority.bad_change`.
    pub fn apply(&self, link: &Link) -> Result<State, AuthorityError> {
        let index = self.head.index + 1;
        if link.index != index {
            return Err(AuthorityError::LinkIndex { expected: index, found: link.index });
        }
        if link.prev != self.head.hash {
            return Err(AuthorityError::BrokenLink(index));
        }
        let bad = |problem: String| AuthorityError::BadOperation { index, problem };
        let op = canonical::decode(link.operation.as_bytes()).map_err(|e| bad(e.to_string()))?;
        if matches!(op.action, Action::Withdrawal(_)) {
            return Err(bad("a withdrawal is not a change of authority".into()));
        }
        // Approvals bind the operation, not the head: applying it twice (an old
        // enrolment replayed after a revocation) is refused.
        if self.applied.contains(op.id.as_str()) {
            return Err(AuthorityError::Replayed { index, operation: op.id.to_string() });
        }
        if link.applied_at < self.applied_at || link.applied_at >= op.expires_at {
            return Err(AuthorityError::BadChange {
                index,
                problem: "applied before the link it follows, or after the operation expired".into(),
            });
        }
        self.check_approvals(index, &op, &link.approvals, link.applied_at)?;
        self.check_consent(index, &op, link.consent.as_ref())?;
        let mut next = self.clone();
        next.change(index, &op, link.public_key.as_deref(), link.applied_at)?;
        next.applied.insert(op.id.as_str().to_owned());
        next.head = Head { index, hash: link.hash()?.to_hex() };
        next.applied_at = link.applied_at;
        Ok(next)
    }

    /// Each approval by an admin of this state, over exactly `op`; together the admin
    /// quorum of this state's policy (a revocation needs any one admin, its proposer
    /// included: it only removes power).
    fn check_approvals(
        &self,
        index: u64,
        op: &Operation,
        approvals: &[CertifiedApproval],
        at: Timestamp,
    ) -> Result<(), AuthorityError> {
        let decisions = count_approvals(op, approvals, &self.registry(), Role::Admin)
            .map_err(|source| AuthorityError::Approval { index, source })?;
        let responsible = op.initiator.responsible_person();
        if crate::rules::one_admin_suffices(op) {
            return if decisions.is_empty() {
                Err(AuthorityError::QuorumNotMet { index, detail: "a revocation needs one admin".into() })
            } else {
                Ok(())
            };
        }
        let mut roster = Roster::new();
        for p in self.people.values().filter(|p| p.roles.contains(&Role::Admin) && !p.keys.is_empty()) {
            roster.add(p.id.clone(), p.groups.iter().cloned());
        }
        match tally(&self.policy().admin_quorum, responsible, &roster, &decisions, op.expires_at, at) {
            Tally::Approved { .. } => Ok(()),
            other => Err(AuthorityError::QuorumNotMet { index, detail: format!("{other:?}") }),
        }
    }

    /// A further key for someone who holds keys needs their approval with one of
    /// them: an admin quorum cannot give a person a key they do not know about (nor
    /// an admin a second identity). Nothing else carries a consent.
    fn check_consent(
        &self,
        index: u64,
        op: &Operation,
        consent: Option<&CertifiedApproval>,
    ) -> Result<(), AuthorityError> {
        let holder = match &op.action {
            Action::ApproverEnroll(e) => self.people.get(&e.approver).filter(|p| !p.keys.is_empty()),
            _ => None,
        };
        match (holder, consent) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(AuthorityError::BadChange {
                index,
                problem: "a consent comes only with a further key of a person who holds keys".into(),
            }),
            (Some(p), None) => Err(AuthorityError::ConsentMissing { index, approver: p.id.to_string() }),
            (Some(p), Some(c)) => {
                let key =
                    p.keys.iter().find(|k| k.credential_id == c.credential_id).filter(|_| c.approver == p.id);
                let Some(key) = key else {
                    return Err(AuthorityError::ConsentMissing { index, approver: p.id.to_string() });
                };
                verify_assertion(0, c, key, &self.registry(), op, Decision::Approve)
                    .map(|_| ())
                    .map_err(|source| AuthorityError::Approval { index, source })
            }
        }
    }

    fn change(
        &mut self,
        index: u64,
        op: &Operation,
        key: Option<&str>,
        at: Timestamp,
    ) -> Result<(), AuthorityError> {
        let bad = |problem: String| AuthorityError::BadChange { index, problem };
        if key.is_some() && !matches!(op.action, Action::ApproverEnroll(_)) {
            return Err(bad("only an enrolment carries a public key".into()));
        }
        match &op.action {
            Action::Withdrawal(_) => return Err(bad("a withdrawal changes no authority".into())),
            Action::ApproverEnroll(e) => {
                let credential = RegistryCredential {
                    credential_id: e.credential.credential_id.clone(),
                    algorithm: "es256".into(),
                    public_key: key
                        .ok_or_else(|| bad("an enrolment without the key's public key".into()))?
                        .into(),
                };
                let bytes = BASE64URL_NOPAD.decode(credential.public_key.as_bytes()).unwrap_or_default();
                if !check_key(&credential)
                    || HEXLOWER.encode(&Sha256::digest(&bytes)) != e.credential.public_key_sha256
                {
                    return Err(bad(
                        "the public key is not the one the approvers saw (SHA-256 differs)".into()
                    ));
                }
                if self.revoked.contains(&e.approver) {
                    return Err(bad(format!("{} was revoked", e.approver)));
                }
                // A key once listed (then revoked) is never listed again, and one
                // public key is never two credentials (nor two people).
                let marks = key_marks(&credential);
                if marks.iter().any(|m| self.keys_ever.contains(m)) {
                    return Err(bad(format!(
                        "key {} (or its public key) was listed before",
                        credential.credential_id
                    )));
                }
                self.keys_ever.extend(marks);
                let person = self.people.entry(e.approver.clone()).or_insert_with(|| Person {
                    id: e.approver.clone(),
                    display_name: e.display_name.clone(),
                    roles: BTreeSet::new(),
                    groups: BTreeSet::new(),
                    keys: Vec::new(),
                });
                person.display_name.clone_from(&e.display_name);
                person.roles.clone_from(&e.roles);
                person.groups.clone_from(&e.groups);
                person.keys.push(credential);
            }
            Action::ApproverRevoke(r) => {
                let Some(person) = self.people.get_mut(&r.approver) else {
                    return Err(bad(format!("{} is not in the chain", r.approver)));
                };
                match &r.credential_id {
                    Some(id) => {
                        let before = person.keys.len();
                        person.keys.retain(|k| &k.credential_id != id);
                        if person.keys.len() == before {
                            return Err(bad(format!("{} holds no key {id}", r.approver)));
                        }
                    }
                    None => {
                        self.people.remove(&r.approver);
                        self.revoked.insert(r.approver.clone());
                    }
                }
            }
            Action::PolicyUpdate(p) => {
                let next = self.policy().version + 1;
                if p.policy.version != next {
                    return Err(bad(format!(
                        "policy version {} is not the next one ({next})",
                        p.policy.version
                    )));
                }
                self.policies.insert(next, p.policy.clone());
                self.policy = p.policy.clone();
            }
            Action::AllowlistAdd(a) => {
                let listed = self.allowlist.iter().any(|e| {
                    e.account == a.account && e.network == a.network && e.destination == a.destination
                });
                if !listed {
                    self.allowlist.push(AllowlistEntry {
                        account: a.account.clone(),
                        network: a.network.clone(),
                        destination: a.destination.clone(),
                        label: a.label.clone(),
                        added_at: at,
                    });
                }
            }
            Action::ApiKeyCreate(k) => {
                if !self.people.contains_key(&k.owner) {
                    return Err(bad(format!("API key owner {} is not a person in the chain", k.owner)));
                }
                if self.api_keys.contains_key(&k.key_id) {
                    return Err(bad(format!("API key {} already exists", k.key_id)));
                }
                self.api_keys.insert(
                    k.key_id.clone(),
                    ApiKeyGrant {
                        key_id: k.key_id.clone(),
                        owner: k.owner.clone(),
                        algorithm: k.algorithm,
                        public_key: Some(k.public_key.clone()),
                        scopes: k.scopes.clone(),
                    },
                );
            }
            Action::Unfreeze(_) => {}
        }
        Ok(())
    }
}

/// The genesis's own consistency, before any signature: version, relying party,
/// policy, people and keys each once, an admin, API keys owned by listed people.
/// People and API keys by id.
type Founded = (BTreeMap<ApproverId, Person>, BTreeMap<ApiKeyId, ApiKeyGrant>);

fn structure(g: &super::Genesis) -> Result<Founded, AuthorityError> {
    if g.version != 1 {
        return Err(AuthorityError::Version(g.version));
    }
    if g.rp.id.is_empty() || g.rp.origins.is_empty() {
        return Err(invalid("the relying party needs an id and at least one origin"));
    }
    g.policy.validate().map_err(|e| invalid(e.to_string()))?;
    let mut people = BTreeMap::new();
    let mut credentials = BTreeSet::new();
    for p in &g.people {
        if p.roles.is_empty() || p.keys.is_empty() {
            return Err(invalid(format!("{} needs at least one role and one key", p.id)));
        }
        for k in &p.keys {
            if !check_key(k) {
                return Err(invalid(format!(
                    "{}'s key {} is not an ES256 public key",
                    p.id, k.credential_id
                )));
            }
            if !credentials.insert(k.credential_id.as_str()) || !credentials.insert(k.public_key.as_str()) {
                return Err(invalid(format!("key {} (or its public key) is listed twice", k.credential_id)));
            }
        }
        if people.insert(p.id.clone(), p.clone()).is_some() {
            return Err(invalid(format!("{} is listed twice", p.id)));
        }
    }
    if !g.people.iter().any(|p| p.roles.contains(&Role::Admin)) {
        return Err(invalid("no admin: nobody could approve a change"));
    }
    let mut api_keys = BTreeMap::new();
    for k in &g.api_keys {
        if !people.contains_key(&k.owner) || api_keys.insert(k.key_id.clone(), k.clone()).is_some() {
            return Err(invalid(format!("API key {} is listed twice or has no owner here", k.key_id)));
        }
    }
    Ok((people, api_keys))
}

impl super::Genesis {
    /// Check the genesis is consistent before anyone signs it (the gateway's draft).
    ///
    /// # Errors
    /// `authority.unsupported_version`, `authority.genesis_invalid`.
    pub fn validate(&self) -> Result<(), AuthorityError> {
        structure(self).map(|_| ())
    }
}
