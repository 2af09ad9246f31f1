//! The invariant checker: reads a gateway's database — and, when given, what
//! clients were told and what settlement received — and checks the promises
//! Countersign makes, independently of the code that keeps them.
//!
//! | rule | what must hold |
//! |---|---|
//! | `operation.corrupt` | every stored operation decodes strictly and its digest column is its digest |
//! | `accepted.missing` | every operation a client was told was accepted is stored, with that digest |
//! | `release.unverified` | every release document verifies as settlement checks it: gateway signature, and a quorum certificate under the policy version that judged the operation (or a policy that needs nobody) |
//! | `release.basis` | an operation the policy held is released only on a quorum |
//! | `release.approval_not_stored` | every approval in a release document is a stored decision, byte for byte |
//! | `release.state` | released ⇔ exactly one settlement-ledger row |
//! | `release.twice` | no operation has two release events or two different release documents |
//! | `release.vetoed` | no released operation has a counted rejection (one rejection vetoes) |
//! | `decision.unverified` | every counted decision is a stored assertion that verifies against its key and is bound to its operation and decision |
//! | `counter.regressed` | each key's signature counters only increase, and the stored counter is not behind them |
//! | `audit.chain` | the audit chain verifies (hashes, signed checkpoints) and its head is the stored head |
//! | `audit.coverage` | every operation's receipt, final state and every counted decision is in the chain once |
//! | `settlement.unknown` | settlement received only documents the ledger holds, each verifying |
//! | `settlement.lost` | everything the ledger marks delivered reached settlement |
//!
//! `countersign-gateway check` runs it on the configured database; the fault
//! scripts (`scripts/faults`) run it after killing gateways mid-run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use countersign_core::audit::verify_export;
use countersign_core::binding::Decision;
use countersign_core::canonical::{self, Digest};
use countersign_core::certificate::{
    CertifiedApproval, Registry, RegistryApprover, RegistryCredential, verify_assertion,
};
use countersign_core::id::{ApproverId, GroupName};
use countersign_core::operation::{Operation, Role};
use countersign_core::policy::Policy;
use countersign_core::release::{ReleaseBasis, ReleaseDocument, Trust, verify_release};
use countersign_core::verdict::Verdict;
use serde::Serialize;
use serde_json::Value;

use crate::AppState;
use crate::error::{Error, Result};
use crate::store::OpState;

/// What happened outside the database, to hold it against.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Operations clients were told were accepted: (operation id, digest hex).
    pub accepted: Vec<(String, String)>,
    /// Release documents settlement received, in arrival order (with repeats:
    /// delivery is at least once).
    pub settled: Option<Vec<Value>>,
}

/// One broken promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which rule (see the module table).
    pub rule: &'static str,
    /// The operation, credential or entry concerned.
    pub subject: String,
    /// What was found.
    pub detail: String,
}

/// What was checked and what was found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Operations stored, by state.
    pub operations: BTreeMap<String, usize>,
    /// Release documents verified.
    pub releases: usize,
    /// Stored decisions verified.
    pub decisions: usize,
    /// Audit entries verified.
    pub audit_entries: u64,
    /// Accepted operations held against the database.
    pub accepted: usize,
    /// Documents settlement received (with repeats).
    pub settled: usize,
    /// Of those, repeats of a document already received (at-least-once delivery;
    /// settlement executes each operation once).
    pub repeated_deliveries: usize,
    /// Every violation found.
    pub violations: Vec<Violation>,
}

impl Report {
    /// True when no invariant is broken.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn violation(&mut self, rule: &'static str, subject: impl Into<String>, detail: impl Into<String>) {
        self.violations.push(Violation { rule, subject: subject.into(), detail: detail.into() });
    }

    /// The rules that were broken, each once.
    #[must_use]
    pub fn broken_rules(&self) -> BTreeSet<&'static str> {
        self.violations.iter().map(|v| v.rule).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let states: Vec<String> = self.operations.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let total: usize = self.operations.values().sum();
        writeln!(f, "operations: {total} ({})", states.join(", "))?;
        writeln!(f, "release documents verified: {}", self.releases)?;
        writeln!(f, "decisions verified: {}", self.decisions)?;
        writeln!(f, "audit entries verified: {}", self.audit_entries)?;
        writeln!(f, "accepted operations found: {}", self.accepted)?;
        writeln!(
            f,
            "settlement documents: {} ({} repeated deliveries)",
            self.settled, self.repeated_deliveries
        )?;
        if self.ok() {
            write!(f, "verdict: OK, every invariant holds")
        } else {
            for v in self.violations.iter().take(50) {
                writeln!(f, "VIOLATION {} {}: {}", v.rule, v.subject, v.detail)?;
            }
            if self.violations.len() > 50 {
                writeln!(f, "… and {} more", self.violations.len() - 50)?;
            }
            write!(f, "verdict: BROKEN, {} violations of {:?}", self.violations.len(), self.broken_rules())
        }
    }
}

struct StoredOp {
    operation: Operation,
    state: OpState,
    digest: String,
    held: bool,
}

struct StoredDecision {
    operation: String,
    decision: String,
    /// Who, with which key, and what they signed.
    approval: CertifiedApproval,
    decided_at: i64,
}

struct StoredCredential {
    approver: String,
    public_key: String,
    counter: i64,
    status: String,
}

/// `release.vetoed`: a rejection counted on an operation that was released anyway.
fn vetoed_releases(decisions: &[StoredDecision], ops: &BTreeMap<String, StoredOp>, report: &mut Report) {
    for d in decisions.iter().filter(|d| d.decision == "reject") {
        if ops.get(&d.operation).is_some_and(|op| op.state == OpState::Released) {
            report.violation(
                "release.vetoed",
                d.operation.clone(),
                format!("released although {} rejected it", d.approval.approver),
            );
        }
    }
}

fn signature_counter(authenticator_data: &str) -> Option<u32> {
    let bytes = data_encoding::BASE64URL_NOPAD.decode(authenticator_data.as_bytes()).ok()?;
    Some(u32::from_be_bytes(bytes.get(33..37)?.try_into().ok()?))
}

const TERMINAL_EVENTS: [&str; 5] = [
    "operation.denied",
    "operation.released",
    "operation.rejected",
    "operation.expired",
    "operation.cancelled",
];

/// Everything the checker reads, loaded once.
struct Snapshot {
    ops: BTreeMap<String, StoredOp>,
    policies: BTreeMap<u32, Policy>,
    credentials: BTreeMap<String, StoredCredential>,
    /// Every key that ever counted (a key revoked after an approval does not undo
    /// the release it took part in).
    registry: Registry,
    decisions: Vec<StoredDecision>,
}

/// Check every invariant. Read-only; a database error is an `Err`, a broken
/// promise is a [`Violation`] in the report. One function per rule below, in the
/// order of the module table.
///
/// # Errors
/// Database errors.
pub async fn check(state: &AppState, evidence: &Evidence) -> Result<Report> {
    let mut report = Report::default();
    let ops = operations(state, &mut report).await?;
    accepted_missing(&ops, evidence, &mut report);
    let (policies, credentials, registry) = registry(state).await?;
    let decisions = load_decisions(state).await?;
    let db = Snapshot { ops, policies, credentials, registry, decisions };
    vetoed_releases(&db.decisions, &db.ops, &mut report);
    decisions_verify(&db, &mut report);
    let ledger = releases(state, &db, &mut report).await?;
    audit(state, &db, &mut report).await?;
    if let Some(settled) = &evidence.settled {
        settlement(settled, &ledger, &mut report);
    }
    // `authority.*`: what the tables say against what the chain produces.
    for (rule, subject, detail) in crate::authority::check_tables(state).await? {
        report.violation(rule, subject, detail);
    }
    Ok(report)
}

/// `operation.corrupt`: operations, decoded strictly, digests recomputed.
async fn operations(state: &AppState, report: &mut Report) -> Result<BTreeMap<String, StoredOp>> {
    let mut ops: BTreeMap<String, StoredOp> = BTreeMap::new();
    for r in state.store.raw_operations().await? {
        let (id, state_text, canonical_text, digest, verdict) =
            (r.id, r.state, r.canonical, r.digest, r.verdict);
        *report.operations.entry(state_text.clone()).or_default() += 1;
        let decoded =
            canonical::decode(canonical_text.as_bytes()).map_err(|e| e.to_string()).and_then(|op| {
                let d = Digest::of(&op).map_err(|e| e.to_string())?.to_hex();
                if d != digest {
                    return Err(format!("digest column {digest} but the operation's digest is {d}"));
                }
                if op.id.as_str() != id {
                    return Err(format!("row {id} holds operation {}", op.id));
                }
                Ok(op)
            });
        let parsed_state = state_text.parse::<OpState>();
        match (decoded, parsed_state) {
            (Ok(operation), Ok(st)) => {
                let held =
                    matches!(serde_json::from_str::<Verdict>(&verdict), Ok(Verdict::RequireApproval { .. }));
                ops.insert(id, StoredOp { operation, state: st, digest, held });
            }
            (Err(e), _) => report.violation("operation.corrupt", id, e),
            (_, Err(e)) => report.violation("operation.corrupt", id, e.to_string()),
        }
    }

    Ok(ops)
}

/// `accepted.missing`: accepted by the gateway, as clients were told.
fn accepted_missing(ops: &BTreeMap<String, StoredOp>, evidence: &Evidence, report: &mut Report) {
    for (id, digest) in &evidence.accepted {
        report.accepted += 1;
        match ops.get(id) {
            None => report.violation(
                "accepted.missing",
                id,
                "a client was told it was accepted; it is not stored",
            ),
            Some(op) if &op.digest != digest => report.violation(
                "accepted.missing",
                id,
                format!("accepted with digest {digest}, stored with {}", op.digest),
            ),
            Some(_) => {}
        }
    }
}

/// Policies by version, every key by id, and the registry of every key that ever
/// counted.
async fn registry(
    state: &AppState,
) -> Result<(BTreeMap<u32, Policy>, BTreeMap<String, StoredCredential>, Registry)> {
    let mut policies: BTreeMap<u32, Policy> = BTreeMap::new();
    for (version, doc) in state.store.raw_policies().await? {
        let policy: Policy =
            serde_json::from_str(&doc).map_err(|e| Error::internal(format!("policy {version}: {e}")))?;
        policies.insert(policy.version, policy);
    }
    let mut credentials: BTreeMap<String, StoredCredential> = BTreeMap::new();
    for r in state.store.raw_credentials().await? {
        credentials.insert(
            r.id,
            StoredCredential {
                approver: r.approver,
                public_key: r.public_key,
                counter: r.counter,
                status: r.status,
            },
        );
    }
    let mut approvers = Vec::new();
    for r in state.store.raw_approvers().await? {
        let (id, roles, groups) = (r.id, r.roles, r.groups);
        let roles: BTreeSet<Role> =
            serde_json::from_str(&roles).map_err(|e| Error::internal(format!("roles of {id}: {e}")))?;
        let groups: BTreeSet<GroupName> =
            serde_json::from_str(&groups).map_err(|e| Error::internal(format!("groups of {id}: {e}")))?;
        let creds = credentials
            .iter()
            .filter(|(_, c)| c.approver == id && c.status != "pending_approval")
            .map(|(cid, c)| RegistryCredential {
                credential_id: cid.clone(),
                algorithm: "es256".into(),
                public_key: c.public_key.clone(),
            })
            .collect();
        approvers.push(RegistryApprover {
            id: ApproverId::new(&id).map_err(|e| Error::internal(format!("approver {id}: {e}")))?,
            roles,
            groups,
            credentials: creds,
        });
    }
    let registry = Registry {
        version: 1,
        rp_id: state.config.webauthn.rp_id.clone(),
        origins: vec![state.config.webauthn.origin.clone()],
        issued_at: state.clock.now(),
        approvers,
    };

    Ok((policies, credentials, registry))
}

async fn load_decisions(state: &AppState) -> Result<Vec<StoredDecision>> {
    let mut decisions: Vec<StoredDecision> = Vec::new();
    for r in state.store.raw_decisions().await? {
        let approver = r.approver;
        decisions.push(StoredDecision {
            operation: r.operation,
            decision: r.decision,
            approval: CertifiedApproval {
                approver: ApproverId::new(&approver)
                    .map_err(|e| Error::internal(format!("{approver}: {e}")))?,
                credential_id: r.credential_id,
                authenticator_data: r.authenticator_data,
                client_data_json: r.client_data_json,
                signature: r.signature,
            },
            decided_at: r.decided_at,
        });
    }
    Ok(decisions)
}

/// `decision.unverified`: each decision a verified assertion, bound to its operation
/// and decision; `counter.regressed`: each key's counters only increase.
fn decisions_verify(db: &Snapshot, report: &mut Report) {
    let (ops, credentials, registry) = (&db.ops, &db.credentials, &db.registry);
    let mut counters: BTreeMap<&str, Vec<(i64, u32, &str)>> = BTreeMap::new();
    for d in &db.decisions {
        report.decisions += 1;
        let subject = format!("{} by {}", d.operation, d.approval.approver);
        let Some(op) = ops.get(&d.operation) else {
            report.violation("decision.unverified", subject, "decision on an operation that is not stored");
            continue;
        };
        let decision = match d.decision.as_str() {
            "approve" => Decision::Approve,
            "reject" => Decision::Reject,
            other => {
                report.violation("decision.unverified", subject, format!("unknown decision {other:?}"));
                continue;
            }
        };
        let Some(cred) =
            credentials.get(&d.approval.credential_id).filter(|c| c.approver == d.approval.approver.as_str())
        else {
            report.violation(
                "decision.unverified",
                subject,
                format!("key {} is not theirs", d.approval.credential_id),
            );
            continue;
        };
        if cred.status == "pending_approval" {
            report.violation("decision.unverified", subject, "signed with a key that never became active");
            continue;
        }
        let key = RegistryCredential {
            credential_id: d.approval.credential_id.clone(),
            algorithm: "es256".into(),
            public_key: cred.public_key.clone(),
        };
        if let Err(e) = verify_assertion(0, &d.approval, &key, registry, &op.operation, decision) {
            report.violation("decision.unverified", subject.clone(), format!("{}: {e}", e.code()));
        }
        match signature_counter(&d.approval.authenticator_data) {
            Some(c) => counters.entry(d.approval.credential_id.as_str()).or_default().push((
                d.decided_at,
                c,
                &d.operation,
            )),
            None => report.violation("decision.unverified", subject, "authenticator data too short"),
        }
    }
    for (cred_id, mut uses) in counters {
        uses.sort_unstable();
        let stored = credentials.get(cred_id).map_or(0, |c| c.counter);
        if uses.iter().all(|(_, c, _)| *c == 0) {
            continue; // an authenticator without a counter
        }
        for pair in uses.windows(2) {
            if pair[1].1 <= pair[0].1 {
                report.violation(
                    "counter.regressed",
                    cred_id,
                    format!("counter {} on {} after {} on {}", pair[1].1, pair[1].2, pair[0].1, pair[0].2),
                );
            }
        }
        let highest = uses.iter().map(|(_, c, _)| *c).max().unwrap_or(0);
        if stored < i64::from(highest) {
            report.violation(
                "counter.regressed",
                cred_id,
                format!("stored counter {stored} is behind a used counter {highest}"),
            );
        }
    }
}

/// `release.state`, `release.unverified`, `release.basis`,
/// `release.approval_not_stored`: the ledger against the operations, each document
/// verified as settlement verifies it. Returns the ledger: operation id → (release
/// document, whether it is marked delivered).
async fn releases(
    state: &AppState,
    db: &Snapshot,
    report: &mut Report,
) -> Result<BTreeMap<String, (Value, bool)>> {
    let (ops, policies, registry, decisions) = (&db.ops, &db.policies, &db.registry, &db.decisions);
    // Stored decisions by (operation, person): a person decides an operation once.
    let by_person: BTreeMap<(&str, &str), &StoredDecision> =
        decisions.iter().map(|d| ((d.operation.as_str(), d.approval.approver.as_str()), d)).collect();
    let mut ledger: BTreeMap<String, (Value, bool)> = BTreeMap::new();
    for r in state.store.raw_ledger().await? {
        let (id, cert, delivered) = (r.operation, r.certificate, r.delivered_at);
        report.releases += 1;
        let Some(op) = ops.get(&id) else {
            report.violation(
                "release.state",
                &id,
                "a settlement-ledger row for an operation that is not stored",
            );
            continue;
        };
        if op.state != OpState::Released {
            report.violation("release.state", &id, format!("in the ledger but {}", op.state.as_str()));
        }
        let Some(policy) = policies.get(&op.operation.policy_version) else {
            report.violation(
                "release.unverified",
                &id,
                format!("judged under policy {} which is not stored", op.operation.policy_version),
            );
            continue;
        };
        let trust = Trust { gateway: &state.keys.verifying_key(), policy, registry };
        match verify_release(cert.as_bytes(), &trust) {
            Ok(released) if released.id == op.operation.id => {}
            Ok(released) => {
                report.violation("release.unverified", &id, format!("the document releases {}", released.id));
            }
            Err(e) => report.violation("release.unverified", &id, format!("{}: {e}", e.code())),
        }
        match serde_json::from_str::<ReleaseDocument>(&cert) {
            Ok(doc) => {
                if op.held && doc.basis != ReleaseBasis::Quorum {
                    report.violation(
                        "release.basis",
                        &id,
                        "the policy held it, but it was released without a quorum",
                    );
                }
                for a in &doc.approvals {
                    let stored = by_person
                        .get(&(id.as_str(), a.approver.as_str()))
                        .is_some_and(|d| d.decision == "approve" && d.approval == *a);
                    if !stored {
                        report.violation(
                            "release.approval_not_stored",
                            &id,
                            format!("{}'s approval is not a stored decision", a.approver),
                        );
                    }
                }
            }
            Err(e) => report.violation("release.unverified", &id, format!("release.malformed: {e}")),
        }
        let value: Value =
            serde_json::from_str(&cert).map_err(|e| Error::internal(format!("ledger row {id}: {e}")))?;
        ledger.insert(id, (value, delivered.is_some()));
    }
    for (id, op) in ops {
        if op.state == OpState::Released && !ledger.contains_key(id) {
            report.violation("release.state", id, "released without a settlement-ledger row");
        }
    }

    Ok(ledger)
}

/// `audit.chain`: the chain verifies and its head is the stored head;
/// `audit.coverage` and `release.twice`: every state change is in it once.
async fn audit(state: &AppState, db: &Snapshot, report: &mut Report) -> Result<()> {
    let export = state.store.audit_export().await?;
    match verify_export(&export, &state.keys.verifying_key()) {
        Ok(summary) => {
            report.audit_entries = summary.entries;
            let (seq, hash) = state.store.raw_audit_head().await?;
            if u64::try_from(seq).ok() != Some(summary.entries)
                || (summary.entries > 0 && hash != summary.head)
            {
                report.violation(
                    "audit.chain",
                    format!("head {seq}"),
                    format!("the stored head is not the chain's last entry ({} entries)", summary.entries),
                );
            }
        }
        Err(e) => report.violation("audit.chain", "export", e.to_string()),
    }
    let mut events: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut counted: BTreeMap<(String, String), usize> = BTreeMap::new();
    let entries = state.store.audit_events().await?;
    for e in &entries {
        let Some(op) = e.operation.as_deref() else { continue };
        *events.entry((op, e.event.as_str())).or_default() += 1;
        if e.event == "decision.counted" {
            let who = e.actor.strip_prefix("approver:").unwrap_or(&e.actor).to_owned();
            *counted.entry((op.to_owned(), who)).or_default() += 1;
        }
    }
    for (id, op) in &db.ops {
        let count = |event: &str| events.get(&(id.as_str(), event)).copied().unwrap_or(0);
        if count("operation.received") != 1 {
            report.violation(
                "audit.coverage",
                id,
                format!("{} operation.received entries, expected 1", count("operation.received")),
            );
        }
        let end = op.state.audit_event();
        if count(end) != 1 {
            report.violation("audit.coverage", id, format!("{} {end} entries, expected 1", count(end)));
        }
        if count("operation.released") > 1 {
            report.violation("release.twice", id, format!("{} release entries", count("operation.released")));
        }
        let ends: Vec<&str> = TERMINAL_EVENTS.iter().copied().filter(|e| count(e) > 0).collect();
        if ends.len() > 1 {
            report.violation("audit.coverage", id, format!("ended more than once: {ends:?}"));
        }
    }
    for d in &db.decisions {
        let n = counted.get(&(d.operation.clone(), d.approval.approver.to_string())).copied().unwrap_or(0);
        if n != 1 {
            report.violation(
                "audit.coverage",
                format!("{} by {}", d.operation, d.approval.approver),
                format!("{n} decision.counted entries, expected 1"),
            );
        }
    }

    Ok(())
}

/// `settlement.unknown`, `settlement.lost`, `release.twice`: what settlement
/// received against the ledger.
fn settlement(settled: &[Value], ledger: &BTreeMap<String, (Value, bool)>, report: &mut Report) {
    let mut received: BTreeMap<String, &Value> = BTreeMap::new();
    for doc in settled {
        report.settled += 1;
        let id = serde_json::from_value::<ReleaseDocument>(doc.clone())
            .ok()
            .and_then(|d| canonical::decode(d.operation.as_bytes()).ok())
            .map(|op| op.id.to_string());
        let Some(id) = id else {
            report.violation(
                "settlement.unknown",
                "document",
                "settlement received a malformed release document",
            );
            continue;
        };
        match (ledger.get(&id).map(|(doc, _)| doc), received.get(&id)) {
            (None, _) => report.violation(
                "settlement.unknown",
                &id,
                "settlement received a release the ledger does not hold",
            ),
            (Some(_), Some(first)) if *first != doc => {
                report.violation("release.twice", &id, "settlement received two different release documents");
            }
            (Some(_), Some(_)) => report.repeated_deliveries += 1,
            (Some(s), None) if s != doc => {
                report.violation("settlement.unknown", &id, "the document differs from the ledger's");
            }
            (Some(_), None) => {
                received.insert(id, doc);
            }
        }
    }
    for (id, _) in ledger.iter().filter(|(_, (_, delivered))| *delivered) {
        if !received.contains_key(id) {
            report.violation("settlement.lost", id, "marked delivered, but settlement never received it");
        }
    }
}
