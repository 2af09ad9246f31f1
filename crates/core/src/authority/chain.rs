//! A verifier's copy of the chain from its pinned genesis, and settlement's rule for
//! a release decided under one of its heads.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{AuthorityError, Head, Link, SignedGenesis, State};
use crate::certificate::{CertifiedApproval, at_least_as_strict, policy_floor};
use crate::operation::{Initiator, Operation};
use crate::policy::{Policy, Quorum};
use crate::quorum::{CountedDecision, Roster, Tally, tally};

/// What the gateway serves at `GET /v1/authority`: the signed genesis and every link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityDocument {
    pub genesis: SignedGenesis,
    pub links: Vec<Link>,
}

/// The chain as far as this verifier has checked it, from the genesis it pins.
/// Extending it verifies only the new links; checking a release reads no chain.
/// It never goes back: a link that differs from one already verified is a fork.
#[derive(Debug, Clone)]
pub struct Authority {
    genesis: Arc<State>,
    /// The state after each link, in order (link n at n - 1).
    links: Vec<Arc<State>>,
    by_hash: HashMap<String, u64>,
}

impl Authority {
    /// Verify the genesis against the pinned hash (lowercase hex).
    ///
    /// # Errors
    /// As [`State::from_genesis`].
    pub fn new(pinned: &str, genesis: &SignedGenesis) -> Result<Authority, AuthorityError> {
        let first = State::from_genesis(pinned, genesis)?;
        let by_hash = HashMap::from([(first.head.hash.clone(), 0)]);
        Ok(Authority { genesis: Arc::new(first), links: Vec::new(), by_hash })
    }

    /// Verify a whole document (genesis and links) from the pinned hash.
    ///
    /// # Errors
    /// As [`Authority::new`] and [`Authority::extend`].
    pub fn from_document(pinned: &str, doc: &AuthorityDocument) -> Result<Authority, AuthorityError> {
        let mut authority = Authority::new(pinned, &doc.genesis)?;
        authority.extend(&doc.links)?;
        Ok(authority)
    }

    /// Verify and add links. Links this verifier already holds must be identical
    /// (else `authority.fork`); the rest must follow on in order. Returns how many
    /// were new.
    ///
    /// # Errors
    /// `authority.fork` and the errors of [`State::apply`]; the links before the
    /// failing one stay added.
    pub fn extend<'a>(&mut self, links: impl IntoIterator<Item = &'a Link>) -> Result<usize, AuthorityError> {
        let mut added = 0;
        for link in links {
            match self.state(link.index) {
                Some(state) if link.index > 0 => {
                    if state.head.hash != link.hash()?.to_hex() {
                        return Err(AuthorityError::Fork(link.index));
                    }
                }
                _ => {
                    let next = self.latest().apply(link)?;
                    self.by_hash.insert(next.head.hash.clone(), next.head.index);
                    self.links.push(Arc::new(next));
                    added += 1;
                }
            }
        }
        Ok(added)
    }

    /// The newest verified state.
    #[must_use]
    pub fn latest(&self) -> &State {
        self.links.last().unwrap_or(&self.genesis)
    }

    fn state(&self, index: u64) -> Option<&State> {
        match index {
            0 => Some(&self.genesis),
            n => self.links.get(usize::try_from(n - 1).ok()?).map(AsRef::as_ref),
        }
    }

    /// The newest head.
    #[must_use]
    pub fn head(&self) -> &Head {
        &self.latest().head
    }

    /// The genesis hash this chain starts from.
    #[must_use]
    pub fn genesis_hash(&self) -> &str {
        &self.genesis.head.hash
    }

    /// The state at `head`, if this verifier holds exactly that head.
    ///
    /// # Errors
    /// `authority.unknown_head`.
    pub fn at(&self, head: &Head) -> Result<&State, AuthorityError> {
        let unknown = || AuthorityError::UnknownHead { index: head.index, hash: head.hash.clone() };
        let index = *self.by_hash.get(&head.hash).ok_or_else(unknown)?;
        if index != head.index {
            return Err(unknown());
        }
        self.state(index).ok_or_else(unknown)
    }

    /// The states in order (the genesis first, then after each link).
    pub fn states(&self) -> impl Iterator<Item = &State> {
        std::iter::once(self.genesis.as_ref()).chain(self.links.iter().map(AsRef::as_ref))
    }

    /// Settlement's rule for an operation released under `head`, beyond the
    /// signatures themselves (checked by [`crate::certificate::verify_quorum`]
    /// against [`Authority::policy_and_registry`]):
    /// - the initiating API key is one the chain admits, with the same owner and the
    ///   withdraw scope (`authority.unknown_api_key`);
    /// - no deny rule of the judging policy matches, and a destination the chain had
    ///   not allowlisted (or was still cooling off) is refused where the policy denies
    ///   those (`authority.denied`) and otherwise needs the withdrawal quorum on top of
    ///   the tiers (`release.quorum_required` / `certificate.quorum_too_weak` as a
    ///   floor, reported as `authority.floor_raised`);
    /// - nothing since the head removed what the release relied on: each approver
    ///   still holds their key (`authority.revoked_since`), the approvals still
    ///   complete the quorum with the roles and groups of the newest state
    ///   (`authority.roles_changed`), and the policy now in force demands no more
    ///   than the release carries (`authority.floor_raised`).
    ///
    /// # Errors
    /// As listed, and `authority.unknown_head` / `authority.unknown_policy`.
    pub fn check_since(
        &self,
        head: &Head,
        op: &Operation,
        quorum: Option<&Quorum>,
        approvals: &[CertifiedApproval],
        released_at: crate::timestamp::Timestamp,
    ) -> Result<(), AuthorityError> {
        let at = self.at(head)?;
        let judged =
            at.policies.get(&op.policy_version).ok_or(AuthorityError::UnknownPolicy(op.policy_version))?;
        if let Initiator::ApiKey { key_id, owner, .. } = &op.initiator {
            // Operations of an API key the chain never admitted are not settled.
            match at.api_keys.get(key_id) {
                Some(grant)
                    if &grant.owner == owner
                        && (op.withdrawal().is_none()
                            || grant.scopes.contains(&crate::operation::Scope::Withdraw)) => {}
                _ => return Err(AuthorityError::UnknownApiKey(key_id.to_string())),
            }
        }
        let latest = self.latest();
        // The floor under the judging policy at the head, and under the newest one.
        let floor = policy_floor(latest.policy(), op)
            .merge(&destination_floor(at, judged, op)?)
            .merge(&destination_floor(latest, latest.policy(), op)?);
        let enough = match quorum {
            Some(q) => at_least_as_strict(q, &floor),
            None => floor.people_needed() == 0,
        };
        if !enough {
            return Err(AuthorityError::FloorRaised(latest.policy().version));
        }
        let Some(quorum) = quorum else { return Ok(()) };
        for a in approvals {
            if !latest.holds_key(&a.approver, &a.credential_id) {
                return Err(AuthorityError::RevokedSince {
                    approver: a.approver.to_string(),
                    credential: a.credential_id.clone(),
                });
            }
        }
        // Roles and groups as the newest state has them.
        let role = crate::rules::deciding_role(op);
        let mut roster = Roster::new();
        for p in latest.people.values().filter(|p| p.roles.contains(&role) && !p.keys.is_empty()) {
            roster.add(p.id.clone(), p.groups.iter().cloned());
        }
        let decisions: Vec<CountedDecision> = approvals
            .iter()
            .map(|a| CountedDecision { approver: a.approver.clone(), decision: crate::Decision::Approve })
            .collect();
        match tally(
            quorum,
            op.initiator.responsible_person(),
            &roster,
            &decisions,
            op.expires_at,
            released_at,
        ) {
            Tally::Approved { .. } => Ok(()),
            other => Err(AuthorityError::RolesChanged(format!("{other:?}"))),
        }
    }

    /// The policy version that judged `op` (as the chain held it at `head`) and the
    /// registry at `head`.
    ///
    /// # Errors
    /// `authority.unknown_head`, `authority.unknown_policy`.
    pub fn policy_and_registry(
        &self,
        head: &Head,
        op: &Operation,
    ) -> Result<(&Policy, crate::certificate::Registry), AuthorityError> {
        let at = self.at(head)?;
        let policy =
            at.policies.get(&op.policy_version).ok_or(AuthorityError::UnknownPolicy(op.policy_version))?;
        Ok((policy, at.registry()))
    }
}

/// What the destination adds to the floor under `policy` in `state`: nothing when it
/// was allowlisted and cooled off by the time the operation was made (or the
/// allowlist is not enforced), else the withdrawal quorum — or a refusal where the
/// policy denies such destinations. Deny rules refuse outright.
fn destination_floor(state: &State, policy: &Policy, op: &Operation) -> Result<Quorum, AuthorityError> {
    if let Some(rule) = policy.deny.iter().find(|r| r.matches(&op.initiator, &op.action)) {
        return Err(AuthorityError::Denied(rule.reason.clone()));
    }
    let Some(w) = op.withdrawal() else { return Ok(Quorum::NOBODY) };
    if !policy.allowlist.enforced {
        return Ok(Quorum::NOBODY);
    }
    let cool_off = i64::try_from(policy.allowlist.cool_off_seconds).unwrap_or(i64::MAX);
    let usable = state.allowlist.iter().any(|e| {
        e.account == w.account
            && e.network == w.network
            && e.destination == w.destination
            && op.created_at >= e.added_at.plus_seconds(cool_off)
    });
    match (usable, policy.allowlist.on_breach) {
        (true, _) => Ok(Quorum::NOBODY),
        (false, crate::policy::Breach::Deny) => {
            Err(AuthorityError::Denied("the destination is not allowlisted (or still cooling off)".into()))
        }
        (false, crate::policy::Breach::RequireApproval) => {
            Ok(Quorum::NOBODY.merge(&policy.withdrawal_quorum))
        }
    }
}
