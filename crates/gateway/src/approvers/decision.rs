//! Decisions: a challenge scoped to one operation, decision and person; the
//! assertion, its binding and counter checked; then settlement tallies the stored
//! decisions and releases or rejects the operation exactly once.

use countersign_core::Timestamp;
use countersign_core::binding::{ApprovalBinding, Decision};
use countersign_core::policy::Quorum;
use countersign_core::quorum::{CountedDecision, Roster, Tally, tally};
use countersign_core::release::{ReleaseBasis, sign_release, verify_release_from_genesis};
use countersign_core::verdict::Verdict;
use data_encoding::BASE64URL_NOPAD;
use serde::Serialize;
use webauthn_rs::prelude::*;

use crate::AppState;
use crate::error::{Error, Result};
use crate::store::{AuditEvent, OpState, OperationRecord, Release};

use super::{
    Approver, Purpose, Scope, Session, assertion_finish, assertion_start, err, roster, save_ceremony,
    take_ceremony,
};

/// Whether a person may see and act on an operation: they hold the role that
/// decides it and belong to a group its quorum names (an operation that needed no
/// quorum, released or denied at once, is shown to everyone with that role).
#[must_use]
pub fn may_see(who: &Approver, record: &OperationRecord) -> bool {
    // A further key for them: they see it, and approve it as their consent.
    if let countersign_core::Action::ApproverEnroll(e) = &record.operation.action
        && e.approver == who.id
    {
        return true;
    }
    let role = countersign_core::certificate::deciding_role(&record.operation);
    if !who.roles.contains(&role) {
        return false;
    }
    let groups: Vec<&str> = record.verdict["quorum"]["groups"]
        .as_array()
        .map(|gs| gs.iter().filter_map(|g| g["group"].as_str()).collect())
        .unwrap_or_default();
    groups.is_empty() || groups.iter().any(|g| who.groups.iter().any(|mine| mine.as_str() == *g))
}

/// Begin a decision on an operation: a challenge scoped to (operation, decision,
/// approver), valid once and briefly.
///
/// # Errors
/// `decision.*` when the operation cannot be decided by this person now.
pub async fn decision_start(
    state: &AppState,
    who: &Session,
    op_id: &str,
    decision: Decision,
    now: Timestamp,
) -> Result<(String, RequestChallengeResponse, OperationRecord)> {
    let record = decidable(state, who, op_id, now).await?;
    let (options, auth_state) = assertion_start(state, &who.approver).await?;
    let scope = Scope::Decision { operation: op_id.to_owned(), digest: record.digest.clone(), decision };
    let cid = save_ceremony(state, &who.approver.id, &scope, &auth_state, now).await?;
    let event = AuditEvent::new(format!("approver:{}", who.approver.id), "decision.challenge")
        .operation(&record.operation.id, &record.digest)
        .detail("decision", decision.to_string());
    state.store.audit(&event, now).await?;
    Ok((cid, options, record))
}

/// The operation, if this person may decide it now.
pub(super) async fn decidable(
    state: &AppState,
    who: &Session,
    op_id: &str,
    now: Timestamp,
) -> Result<OperationRecord> {
    use countersign_core::rules::{NotDecidable, may_decide};
    let record = state.store.operation(op_id).await?.ok_or_else(|| Error::not_found("operation"))?;
    let pending = record.state == OpState::Pending;
    match may_decide(&who.approver.id, &who.approver.roles, &record.operation, pending, now) {
        Ok(()) => {}
        Err(NotDecidable::WrongRole(role)) => {
            return Err(err(
                403,
                "decision.wrong_role",
                format!("only people with the {role:?} role decide on this operation"),
            ));
        }
        Err(NotDecidable::NotPending) => {
            return Err(err(
                409,
                "decision.not_pending",
                format!("the operation is {}", record.state.as_str()),
            ));
        }
        Err(NotDecidable::Expired) => return Err(err(409, "decision.expired", "the operation has expired")),
        Err(NotDecidable::Initiator) => {
            return Err(err(
                403,
                "decision.initiator",
                "you are responsible for this operation and cannot decide on it",
            ));
        }
        Err(NotDecidable::Subject) => {
            return Err(err(403, "decision.subject", "this operation is about you: others decide on it"));
        }
    }
    Ok(record)
}

/// What a counted decision led to.
#[derive(Debug, Serialize)]
pub struct DecisionOutcome {
    /// The operation's state afterwards.
    pub state: OpState,
    pub tally: Tally,
}

/// Finish a decision: verify the assertion, its `countersign` member, count it,
/// tally, and release or reject.
///
/// # Errors
/// `ceremony.*`, `assertion.*`, `binding.*`, `decision.*`.
pub async fn decision_finish(
    state: &AppState,
    who: &Session,
    op_id: &str,
    ceremony_id: &str,
    response: &PublicKeyCredential,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<DecisionOutcome> {
    if let Some(r) = reason {
        countersign_core::operation::check_text("reason", r)
            .map_err(|e| err(400, "decision.bad_reason", e.to_string()))?;
    }
    let c = take_ceremony(state, ceremony_id, Purpose::Decision, now).await?;
    let Scope::Decision { operation, digest, decision } = &c.scope else {
        return Err(Error::internal("a decision ceremony with another scope"));
    };
    if c.approver != who.approver.id || operation != op_id {
        return Err(err(
            401,
            "ceremony.wrong_scope",
            "this challenge was issued for another operation or person",
        ));
    }
    let decision = *decision;
    let record = decidable(state, who, op_id, now).await?;
    if &record.digest != digest {
        return Err(err(
            409,
            "decision.operation_changed",
            "the operation changed since the challenge was issued",
        ));
    }
    // The signature first: only a real signature by this person's key can put a
    // refusal in the audit chain (a stolen session alone cannot write evidence).
    let cdj: &[u8] = response.response.client_data_json.as_ref();
    let (cred, _) = assertion_finish(state, &c, response, now).await?;
    // The signed clientDataJSON must carry exactly this operation and decision.
    // ... and, from binding version 2, the reason sent with it.
    let bound = ApprovalBinding::from_client_data_json(cdj).and_then(|b| {
        b.check(&record.operation, decision)?;
        b.check_reason(reason)?;
        Ok(b)
    });
    let binding = match bound {
        Ok(b) => b,
        Err(e) => {
            // This person's key signed something else than what the gateway holds: the
            // sign of a substituted operation on their screen. Audited, at most once a
            // minute per person and code (each refusal is still answered and counted).
            let actor = format!("approver:{}", who.approver.id);
            if state.refusals.admit(&actor, e.code(), now) {
                let event = AuditEvent::new(actor, "decision.binding_refused")
                    .operation(&record.operation.id, &record.digest)
                    .detail("code", e.code())
                    .detail("credential", cred.id.as_str());
                state.store.audit(&event, now).await?;
            }
            return Err(e.into());
        }
    };

    let mut tx = state.store.begin().await?;
    // The operation's lock first: a decision is counted either before a settlement
    // reads the decisions (and is seen by it) or after it moved the operation (and
    // is refused here). A veto can never be counted on a released operation.
    if state.store.lock_operation(&mut tx, op_id).await? != Some(OpState::Pending) {
        return Err(err(409, "decision.not_pending", "the operation was decided meanwhile"));
    }
    let new = crate::store::NewDecision {
        operation: op_id,
        approver: &who.approver.id,
        credential_id: &cred.id,
        decision,
        reason,
        authenticator_data: BASE64URL_NOPAD.encode(response.response.authenticator_data.as_ref()),
        client_data_json: BASE64URL_NOPAD.encode(cdj),
        signature: BASE64URL_NOPAD.encode(response.response.signature.as_ref()),
    };
    if !state.store.insert_decision_in(&mut tx, &new, now).await? {
        return Err(err(
            409,
            "decision.already_decided",
            "you already decided on this operation (a person counts once)",
        ));
    }
    let event = AuditEvent::new(format!("approver:{}", who.approver.id), "decision.counted")
        .operation(&record.operation.id, &record.digest)
        .detail("decision", decision.to_string())
        .detail("credential", cred.id.as_str())
        // What the person wrote, and whether their key signed it (binding v2).
        .detail("reason", reason.unwrap_or_default())
        .detail("reason_signed", binding.reason.is_some());
    state.store.append_in(&mut tx, &event, now).await?;
    state.store.commit(tx).await?;
    settle(state, &record, now).await
}

/// Tally an operation's stored decisions and release or reject it (exactly once).
/// The decisions are read and the operation moved in one transaction holding the
/// operation's lock, so no decision can land between the tally and the move.
pub(super) async fn settle(
    state: &AppState,
    record: &OperationRecord,
    now: Timestamp,
) -> Result<DecisionOutcome> {
    let quorum: Quorum =
        match serde_json::from_value::<Verdict>(record.verdict.clone()).map_err(Error::internal)? {
            Verdict::RequireApproval { quorum, .. } => quorum,
            _ => return Err(Error::internal("a pending operation without a quorum")),
        };
    let role = countersign_core::certificate::deciding_role(&record.operation);
    let (_, people) = roster(state).await?;
    let about = countersign_core::rules::subject(&record.operation);
    let mut roster = Roster::new();
    // The person an operation is about never counts towards it (their approval of a
    // further key of theirs is their consent, carried in the link).
    for p in people.iter().filter(|p| p.roles.contains(&role) && Some(&p.id) != about) {
        roster.add(p.id.clone(), p.groups.iter().cloned());
    }
    let op = &record.operation;
    // Verified before the transaction (SQLite has one connection): the chain the
    // release is checked against, and that an administrative change extends.
    let mut authority = crate::authority::verified(state).await?;
    let mut tx = state.store.begin().await?;
    let current = state.store.lock_operation(&mut tx, op.id.as_str()).await?;
    let mut decisions = Vec::new();
    let mut approvals = Vec::new();
    let mut consent = None;
    let mut refused_by_subject = false;
    for d in state.store.decisions_with_keys_in(&mut tx, op.id.as_str()).await? {
        if !countersign_core::rules::counts(d.decision, d.key_status.as_deref() == Some("active")) {
            continue;
        }
        if Some(&d.approver) == about {
            // Their approval of a further key of theirs is their consent; their
            // rejection ("not my key") ends it.
            match d.decision {
                Decision::Approve => consent = Some(d.signed),
                Decision::Reject => refused_by_subject = true,
            }
            continue;
        }
        decisions.push(CountedDecision { approver: d.approver, decision: d.decision });
        if d.decision == Decision::Approve {
            approvals.push(d.signed);
        }
    }
    state.race_windows.pause(crate::race::Window::Settle).await;
    let mut t = tally(&quorum, op.initiator.responsible_person(), &roster, &decisions, op.expires_at, now);
    // A revocation takes effect with one admin's approval, its proposer's included.
    if countersign_core::rules::one_admin_suffices(op)
        && now < op.expires_at
        && !matches!(t, Tally::Rejected { .. })
    {
        let first =
            decisions.iter().find(|d| d.decision == Decision::Approve && roster.contains(&d.approver));
        if let Some(d) = first {
            t = Tally::Approved { approvers: vec![d.approver.clone()] };
        }
    }
    if refused_by_subject && !matches!(t, Tally::Expired) {
        t = Tally::Rejected { by: about.into_iter().cloned().collect() };
    }
    if current != Some(OpState::Pending) {
        // Moved meanwhile (another decision's settlement, the sweep, another instance).
        let state_now = current.ok_or_else(|| Error::not_found("operation"))?;
        return Ok(DecisionOutcome { state: state_now, tally: t });
    }
    let (to, doc) = match &t {
        Tally::Approved { approvers } => {
            // The link carries every counted approval of someone on the roster: the
            // chain counts them against the admin quorum in force when it is applied,
            // which may be stricter than the one this operation was judged under.
            let evidence_for_link: Vec<_> =
                approvals.iter().filter(|a| roster.contains(&a.approver)).cloned().collect();
            approvals.retain(|a| approvers.contains(&a.approver));
            let withdrawal = op.withdrawal().is_some();
            let head = match authority.as_mut() {
                Some(chain) if !withdrawal => {
                    let evidence = crate::authority::Evidence {
                        approvals: &evidence_for_link,
                        consent: consent.as_ref(),
                    };
                    Some(crate::authority::append_in(state, &mut tx, chain, record, evidence, now).await?)
                }
                Some(chain) => Some(chain.head().clone()),
                None => None,
            };
            let doc = sign_release(
                op,
                ReleaseBasis::Quorum,
                Some(quorum.clone()),
                approvals,
                now,
                head,
                state.keys.signing_key(),
            )
            .map_err(Error::internal)?;
            if let (Some(chain), true) = (&authority, withdrawal) {
                // Fail closed: what settlement would refuse is not released (a key or
                // role the gateway's tables hold but the chain never produced).
                let json = serde_json::to_vec(&doc).map_err(Error::internal)?;
                let verifying = state.keys.verifying_key();
                if let Err(e) = verify_release_from_genesis(&json, &verifying, chain) {
                    drop(tx);
                    let event = AuditEvent::new("gateway", "release.refused_by_authority")
                        .operation(&op.id, &record.digest)
                        .detail("code", e.code());
                    state.store.audit(&event, now).await?;
                    return Err(err(
                        409,
                        "authority.release_refused",
                        format!("the authority chain does not support this release: {e}"),
                    ));
                }
            }
            (OpState::Released, Some(serde_json::to_value(doc).map_err(Error::internal)?))
        }
        Tally::Rejected { .. } => (OpState::Rejected, None),
        Tally::Expired => (OpState::Expired, None),
        Tally::Pending { .. } => return Ok(DecisionOutcome { state: OpState::Pending, tally: t }),
    };
    let event = AuditEvent::new("gateway", to.audit_event())
        .operation(&op.id, &record.digest)
        .detail("basis", "quorum");
    let release = doc.as_ref().map(|document| Release { document, action: Some(&op.action) });
    if !state
        .store
        .transition_in(&mut tx, &op.id, OpState::Pending, to, release.as_ref(), &event, now)
        .await?
    {
        return Err(Error::internal("an operation locked as pending could not be moved"));
    }
    state.store.commit(tx).await?;
    if authority.is_some() && op.withdrawal().is_none() && to == OpState::Released {
        crate::authority::refresh(state).await?;
    }
    Ok(DecisionOutcome { state: to, tally: t })
}

/// Pending operations, newest first, for approvers.
///
/// # Errors
/// Store errors.
pub async fn pending(state: &AppState, limit: i64) -> Result<Vec<OperationRecord>> {
    let filter = crate::store::OperationFilter { state: Some(OpState::Pending), ..Default::default() };
    state.store.operations(&filter, limit).await
}

/// The most recent operations that are no longer pending (released, rejected,
/// expired, denied), newest first: the approvers' history.
///
/// # Errors
/// Store errors.
pub async fn decided(state: &AppState, limit: i64) -> Result<Vec<OperationRecord>> {
    let filter = crate::store::OperationFilter { decided: true, ..Default::default() };
    state.store.operations(&filter, limit).await
}
