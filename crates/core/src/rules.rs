//! Who may decide what: the approval rule's pure parts, shared by the gateway (which
//! enforces them when a person asks to decide) and settlement (which checks them
//! again offline, [`crate::certificate`]). The tally itself is [`crate::quorum`].

use std::collections::BTreeSet;

use crate::binding::Decision;
use crate::id::ApproverId;
use crate::operation::{Action, Operation, Role};
use crate::timestamp::Timestamp;

/// The person an operation is about (enrolling or revoking them), who must not
/// approve it.
#[must_use]
pub fn subject(op: &Operation) -> Option<&ApproverId> {
    match &op.action {
        Action::ApproverEnroll(e) => Some(&e.approver),
        Action::ApproverRevoke(r) => Some(&r.approver),
        _ => None,
    }
}

/// Whether one admin's approval is enough, their proposer's included: a revocation
/// only removes power, so it takes effect at once (it is still a link, signed by
/// that admin, [`crate::authority`]).
#[must_use]
pub fn one_admin_suffices(op: &Operation) -> bool {
    matches!(op.action, Action::ApproverRevoke(_))
}

/// Who decides an operation: approvers decide withdrawals, admins decide every
/// administrative change (enrollment, revocation, policy, allowlist, API keys,
/// unfreeze).
#[must_use]
pub fn deciding_role(op: &Operation) -> Role {
    match op.action {
        Action::Withdrawal(_) => Role::Approver,
        _ => Role::Admin,
    }
}

/// Why a person may not decide an operation now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotDecidable {
    /// People with another role decide this kind of operation.
    WrongRole(Role),
    /// It is no longer waiting for decisions.
    NotPending,
    /// Its time is up.
    Expired,
    /// They are responsible for it (the initiating key's owner, or the proposer).
    Initiator,
    /// It is about them (their enrollment or revocation).
    Subject,
}

/// Whether `person`, holding `roles`, may decide `op` at `now`; `pending` is
/// whether the operation still waits for decisions. The checks run in this order,
/// so the first reason is the one reported.
///
/// # Errors
/// The first [`NotDecidable`] reason.
pub fn may_decide(
    person: &ApproverId,
    roles: &BTreeSet<Role>,
    op: &Operation,
    pending: bool,
    now: Timestamp,
) -> Result<(), NotDecidable> {
    let role = deciding_role(op);
    // The person a further key is for decides on it as their consent, whatever their
    // role: never counted towards the quorum, but the authority chain needs it
    // (`crate::authority`) before the key can count.
    let consenting = matches!(&op.action, Action::ApproverEnroll(e) if &e.approver == person);
    if !consenting && !roles.contains(&role) {
        return Err(NotDecidable::WrongRole(role));
    }
    if !pending {
        return Err(NotDecidable::NotPending);
    }
    if now >= op.expires_at {
        return Err(NotDecidable::Expired);
    }
    // An admin who proposed a further key for themselves consents to it like anyone;
    // an admin who proposed a revocation signs it at once.
    if op.initiator.responsible_person() == person && !consenting && !one_admin_suffices(op) {
        return Err(NotDecidable::Initiator);
    }
    if subject(op) == Some(person) && !consenting {
        return Err(NotDecidable::Subject);
    }
    Ok(())
}

/// Whether a recorded decision still counts, given whether the key that signed it
/// is active now: an approval counts only while its key is active (a key flagged as
/// cloned, or revoked, loses every approval it gave, also on operations still
/// pending); a rejection always counts (stopping is safe).
#[must_use]
pub fn counts(decision: Decision, key_active: bool) -> bool {
    decision == Decision::Reject || key_active
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_need_an_active_key_rejections_do_not() {
        assert!(counts(Decision::Approve, true));
        assert!(!counts(Decision::Approve, false));
        assert!(counts(Decision::Reject, true));
        assert!(counts(Decision::Reject, false));
    }
}
