//! The invariant checker itself: it passes a real run, and names each broken
//! promise when the database, the audit chain or the evidence is tampered with.

use countersign_core::Decision;
use countersign_core::release::{ReleaseBasis, sign_release};
use countersign_gateway::invariants::{Evidence, Report, check};
use serde_json::Value;

use crate::support::*;
use crate::{decide, state_of};

async fn run(gw: &Gateway, evidence: &Evidence) -> Report {
    check(&gw.state, evidence).await.unwrap()
}

async fn exec(gw: &Gateway, sql: &str) -> u64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(gw.state.store.pool())
        .await
        .unwrap()
        .rows_affected()
}

/// Assert `rule` is reported now and was not before.
fn newly_broken(before: &Report, after: &Report, rule: &str) {
    assert!(!before.broken_rules().contains(rule), "{rule} was already broken:\n{before}");
    assert!(after.broken_rules().contains(rule), "{rule} not reported:\n{after}");
}

pub async fn the_invariant_checker_passes_a_real_run_and_names_each_broken_promise(db: Db) {
    let gw = Gateway::start_tls(db).await;
    let alice = approver(&gw, "alice").await;
    let carol = approver(&gw, "carol").await;
    let bot = gw.api_key("key_bot1", KeySpec::default()).await;

    let mut accepted = Vec::new();
    let mut submit = |reply: Reply| {
        let id = reply.op_id();
        accepted.push((id.clone(), reply.body["digest"].as_str().unwrap().to_owned()));
        id
    };
    let small = submit(gw.withdraw(&bot, &eth("0.5")).await);
    let large = submit(gw.withdraw(&bot, &eth("12.5")).await);
    let vetoed = submit(gw.withdraw(&bot, &eth("13")).await);
    let waiting = submit(gw.withdraw(&bot, &eth("14")).await);
    decide(&alice, &large, Decision::Approve).await.unwrap();
    decide(&carol, &large, Decision::Approve).await.unwrap();
    decide(&alice, &vetoed, Decision::Reject).await.unwrap();
    decide(&carol, &waiting, Decision::Approve).await.unwrap();
    assert_eq!(state_of(&gw, &small).await, "released");
    assert_eq!(state_of(&gw, &large).await, "released");
    assert_eq!(state_of(&gw, &waiting).await, "pending");
    let ledger = gw.state.store.ledger().await.unwrap();
    let settled: Vec<Value> = ledger.iter().map(|l| l.certificate.clone()).collect();
    let mut evidence = Evidence { accepted, settled: Some(settled) };

    // A real run: every promise holds.
    let clean = run(&gw, &evidence).await;
    assert!(clean.ok(), "{clean}");
    assert_eq!((clean.releases, clean.decisions, clean.accepted, clean.settled), (2, 4, 4, 2), "{clean}");
    assert_eq!(clean.operations.get("pending"), Some(&1));
    assert!(clean.audit_entries >= 12, "{clean}");

    // What clients were told is held against the store.
    let mut told = evidence.clone();
    told.accepted.push(("op_00000000000000000000000000".into(), "00".into()));
    newly_broken(&clean, &run(&gw, &told).await, "accepted.missing");

    // Settlement receiving a second, different document for one operation.
    let op = gw.state.store.operation(&large).await.unwrap().unwrap().operation;
    let first = ledger.iter().find(|l| l.operation_id == large).unwrap().certificate.clone();
    let first: countersign_core::release::ReleaseDocument = serde_json::from_value(first).unwrap();
    let again = sign_release(
        &op,
        ReleaseBasis::Quorum,
        first.quorum.clone(),
        first.approvals.clone(),
        gw.now().plus_seconds(5),
        None,
        gw.state.keys.signing_key(),
    )
    .unwrap();
    let mut twice = evidence.clone();
    twice.settled.as_mut().unwrap().push(serde_json::to_value(&again).unwrap());
    newly_broken(&clean, &run(&gw, &twice).await, "release.twice");

    // A held operation released without a quorum, even with a genuine gateway
    // signature (a compromised gateway host).
    let held = gw.state.store.operation(&waiting).await.unwrap().unwrap().operation;
    let forged = sign_release(
        &held,
        ReleaseBasis::AllowedByPolicy,
        None,
        vec![],
        gw.now(),
        None,
        gw.state.keys.signing_key(),
    )
    .unwrap();
    let forged = serde_json::to_string(&forged).unwrap();
    exec(&gw, &format!("UPDATE operations SET state = 'released' WHERE id = '{waiting}'")).await;
    exec(
        &gw,
        &format!(
            "INSERT INTO settlement_ledger (operation_id, released_at, certificate) VALUES ('{waiting}', 0, '{}')",
            forged.replace('\'', "''")
        ),
    )
    .await;
    let forged_run = run(&gw, &evidence).await;
    for rule in ["release.unverified", "release.basis", "audit.coverage"] {
        newly_broken(&clean, &forged_run, rule);
    }
    exec(&gw, &format!("DELETE FROM settlement_ledger WHERE operation_id = '{waiting}'")).await;
    let released_no_ledger = run(&gw, &evidence).await;
    newly_broken(&clean, &released_no_ledger, "release.state");
    exec(&gw, &format!("UPDATE operations SET state = 'pending' WHERE id = '{waiting}'")).await;
    assert!(run(&gw, &evidence).await.ok(), "restored");

    // A stored decision whose signature is another decision's.
    exec(
        &gw,
        &format!(
            "UPDATE decisions SET signature = (SELECT signature FROM decisions WHERE operation_id = '{large}' \
             AND approver_id = 'alice') WHERE operation_id = '{vetoed}'"
        ),
    )
    .await;
    let swapped = run(&gw, &evidence).await;
    newly_broken(&clean, &swapped, "decision.unverified");

    // A key's stored counter put back.
    exec(&gw, "UPDATE credentials SET counter = 0").await;
    newly_broken(&clean, &run(&gw, &evidence).await, "counter.regressed");

    // One audit entry rewritten: the chain no longer verifies.
    assert_eq!(exec(&gw, "UPDATE audit_log SET entry = REPLACE(entry, 'carol', 'mallory') WHERE seq = (SELECT MIN(seq) FROM audit_log WHERE entry LIKE '%carol%')").await, 1);
    newly_broken(&clean, &run(&gw, &evidence).await, "audit.chain");

    // And settlement losing a delivered document.
    exec(&gw, "UPDATE settlement_ledger SET delivered_at = 1").await;
    evidence.settled.as_mut().unwrap().clear();
    newly_broken(&clean, &run(&gw, &evidence).await, "settlement.lost");
}
