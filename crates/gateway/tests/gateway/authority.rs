//! The authority chain end to end: founding people sign the genesis with their
//! keys, a large withdrawal is released and verified from the pinned genesis hash,
//! an enrolment becomes a link, and each attack through the gateway's tables or
//! key is refused by settlement, by the gateway itself, and named by the checker.

use countersign_client::{Client, EnrollmentLink, Session};
use countersign_core::certificate::{CertifiedApproval, DecisionCheck};
use countersign_core::operation::Role;
use countersign_core::release::{ReleaseBasis, sign_release, verify_release_from_genesis};
use countersign_core::{Decision, OperationKind};
use countersign_gateway::invariants::{Evidence, check};
use countersign_softkey::SoftKey;
use serde_json::json;

use crate::support::*;

struct Person {
    id: &'static str,
    client: Client,
    session: Session,
    key: SoftKey,
}

async fn founder(gw: &Gateway, id: &'static str, roles: &[Role], groups: &[&str]) -> Person {
    let link = EnrollmentLink::parse(&bootstrap_link(gw, id, roles, groups).await).unwrap();
    let client = Client::for_link(&link).unwrap();
    let key = soft_key();
    client.enroll(&link.code, "founding key", key.clone(), &ceremony()).await.unwrap();
    let session = client.login(id, key.clone(), &ceremony()).await.unwrap();
    Person { id, client, session, key }
}

/// An admin invites a trader, who enrols `key` from the link (pending the quorum).
async fn invited(admin: &Person, id: &str, key: SoftKey) -> countersign_client::Enrolled {
    let (roles, groups) = (["approver".to_owned()], ["traders".to_owned()]);
    let link = admin.client.invite(&admin.session, id, id, &roles, &groups).await.unwrap();
    let link = EnrollmentLink::parse(&link).unwrap();
    let client = Client::for_link(&link).unwrap();
    client.enroll(&link.code, "laptop key", key, &ceremony()).await.unwrap()
}

async fn approve(p: &Person, op: &str) -> serde_json::Value {
    let challenge = p.client.challenge(&p.session, op, Decision::Approve).await.unwrap();
    p.client.sign_decision(&p.session, challenge, None, p.key.clone(), &ceremony()).await.unwrap()
}

async fn violations(gw: &Gateway) -> Vec<(String, String)> {
    let report = check(&gw.state, &Evidence::default()).await.unwrap();
    report
        .violations
        .iter()
        .filter(|v| v.rule.starts_with("authority."))
        .map(|v| (v.rule.to_owned(), v.subject.clone()))
        .collect()
}

async fn release_of(gw: &Gateway, id: &str) -> Vec<u8> {
    let ledger = gw.state.store.ledger().await.unwrap();
    serde_json::to_vec(&ledger.iter().find(|l| l.operation_id == id).unwrap().certificate).unwrap()
}

pub async fn settlement_verifies_from_the_genesis_and_refuses_what_the_tables_invent(db: Db) {
    let gw = Gateway::start_tls(db).await;
    // Traders first: the bootstrap closes once the admins could approve enrolments.
    let trader = |id| founder(&gw, id, &[Role::Approver], &["traders"]);
    let (alice, bob, carol) = (trader("alice").await, trader("bob").await, trader("carol").await);
    let admin = |id| founder(&gw, id, &[Role::Admin], &["admins"]);
    let (dave, erin, frank) = (admin("dave").await, admin("erin").await, admin("frank").await);
    let key = gw.api_key("key_mm1", KeySpec::default()).await; // owned by bob

    // The host drafts the genesis; each founding key signs the hash its person
    // compared out of band. Until the last one, nothing is sealed.
    let draft = countersign_gateway::authority::draft(&gw.state, gw.now()).await.unwrap();
    assert_eq!((draft.sealed, draft.missing.len(), draft.genesis.api_keys.len()), (false, 6, 1));
    let hash = draft.hash.clone();
    let other = "0".repeat(64);
    let err = dave.client.sign_genesis(&dave.session, "dave", &other, dave.key.clone(), &ceremony()).await;
    assert!(matches!(err.unwrap_err(), countersign_client::Error::Tampered(_)));
    for p in [&dave, &erin, &frank, &alice, &bob] {
        let status =
            p.client.sign_genesis(&p.session, p.id, &hash, p.key.clone(), &ceremony()).await.unwrap();
        assert!(!status.sealed);
    }
    assert_eq!(
        carol.client.genesis().await.unwrap().missing,
        vec![("carol".to_owned(), carol_key_id(&gw).await)]
    );
    let sealed =
        carol.client.sign_genesis(&carol.session, "carol", &hash, carol.key.clone(), &ceremony()).await;
    assert!(sealed.unwrap().sealed);
    assert!(violations(&gw).await.is_empty(), "{:?}", violations(&gw).await);

    // From now on the host grants no power.
    let id = "mallory".parse().unwrap();
    let refused = countersign_gateway::approvers::revoke(&gw.state, &id, "host", gw.now()).await.unwrap_err();
    assert_eq!(refused.code, "authority.host_refused");
    let refused = countersign_gateway::approvers::issue_enrollment_code(
        &gw.state,
        &id,
        "Mallory",
        &[Role::Admin].into(),
        &["admins".parse().unwrap()].into(),
        None,
        gw.now(),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code, "approver.bootstrap_closed");

    // A large withdrawal, approved by two traders, verifies from the pinned hash.
    let settlement = alice.client.verified_authority(&hash).await.unwrap();
    // A head beyond any index is a bad query, not a server error.
    let url = format!("{}/v1/authority/links?after={}", gw.base, u64::MAX);
    assert_eq!(gw.http.get(url).send().await.unwrap().status(), 400);
    // A client whose profile pins another genesis refuses this gateway's chain.
    let elsewhere = alice.client.clone().with_genesis("00".repeat(32)).pinned_authority().await.unwrap_err();
    assert!(elsewhere.to_string().contains("authority.genesis_mismatch"), "{elsewhere}");
    let (_, pinned) = alice.client.clone().with_genesis(hash.clone()).pinned_authority().await.unwrap();
    assert!(pinned);
    let large = gw.withdraw(&key, &eth("5")).await.op_id();
    approve(&alice, &large).await;
    assert_eq!(approve(&carol, &large).await["state"], "released");
    let doc = release_of(&gw, &large).await;
    let trusted = gw.state.keys.verifying_key();
    assert_eq!(verify_release_from_genesis(&doc, &trusted, &settlement).unwrap().id.as_str(), large);

    // An admin invites gina; two other admins approve; the enrolment is link 1.
    let enrolled = invited(&dave, "gina", soft_key()).await;
    assert_eq!(enrolled.status, "pending_approval");
    let pending = erin.client.pending(&erin.session).await.unwrap();
    let enrol = pending.iter().find(|o| o.operation.kind() == OperationKind::ApproverEnroll).unwrap();
    let enrol = enrol.operation.id.to_string();
    approve(&erin, &enrol).await;
    assert_eq!(approve(&frank, &enrol).await["state"], "released");
    let mut settlement = settlement;
    let doc = alice.client.authority().await.unwrap();
    assert_eq!(settlement.extend(&doc.links).unwrap(), 1);
    assert_eq!(settlement.latest().people[&"gina".parse().unwrap()].keys.len(), 1);
    assert!(violations(&gw).await.is_empty(), "{:?}", violations(&gw).await);

    // Attack: an admin gives himself a second identity, a key "for" carol. Two other
    // admins approve, but the chain needs carol's own key: nothing is released.
    let mine = soft_key();
    let enrolled = invited(&dave, "carol", mine.clone()).await;
    assert_eq!(enrolled.status, "pending_approval");
    let pending = erin.client.pending(&erin.session).await.unwrap();
    let second = pending.iter().find(|o| o.operation.kind() == OperationKind::ApproverEnroll).unwrap();
    let second = second.operation.id.to_string();
    approve(&erin, &second).await;
    let challenge = frank.client.challenge(&frank.session, &second, Decision::Approve).await.unwrap();
    let err =
        frank.client.sign_decision(&frank.session, challenge, None, frank.key.clone(), &ceremony()).await;
    let err = err.unwrap_err();
    assert_eq!(err.code(), "authority.link_refused", "{err:?}");
    assert!(err.to_string().contains("consent"), "{err}");
    assert_eq!(gw.state.store.operation(&second).await.unwrap().unwrap().state.as_str(), "pending");
    // carol sees it, and her consent (with the key she holds) releases it; her
    // approval is not counted towards the admin quorum.
    let hers = carol.client.pending(&carol.session).await.unwrap();
    assert!(hers.iter().any(|o| o.operation.id.to_string() == second));
    assert_eq!(approve(&carol, &second).await["state"], "released");
    let doc = alice.client.authority().await.unwrap();
    assert_eq!(settlement.extend(&doc.links).unwrap(), 1);
    assert_eq!(doc.links[1].consent.as_ref().unwrap().approver.as_str(), "carol");
    assert_eq!(settlement.latest().people[&"carol".parse().unwrap()].keys.len(), 2);
    assert!(violations(&gw).await.is_empty(), "{:?}", violations(&gw).await);
    // A key "for" alice that she did not ask for: her rejection ends it at once.
    invited(&dave, "alice", soft_key()).await;
    let pending = alice.client.pending(&alice.session).await.unwrap();
    let unasked = pending.iter().find(|o| o.operation.kind() == OperationKind::ApproverEnroll).unwrap();
    let unasked = unasked.operation.id.to_string();
    let challenge = alice.client.challenge(&alice.session, &unasked, Decision::Reject).await.unwrap();
    let signed = alice
        .client
        .sign_decision(&alice.session, challenge, Some("not my key"), alice.key.clone(), &ceremony())
        .await;
    assert_eq!(signed.unwrap()["state"], "rejected");

    // A revocation takes effect with one admin's key, its proposer's: gina is gone
    // at once, and the chain's link carries dave's signature.
    let revocation =
        json!({"kind": "approver_revoke", "details": {"approver": "gina", "reason": "left the desk"}});
    let proposed = dave.client.propose(&dave.session, revocation).await.unwrap();
    let revocation = proposed.operation.id.to_string();
    assert_eq!(approve(&dave, &revocation).await["state"], "released");
    let doc = alice.client.authority().await.unwrap();
    settlement.extend(&doc.links).unwrap();
    assert!(!settlement.latest().people.contains_key(&"gina".parse().unwrap()));
    let signed_by: Vec<&str> =
        doc.links.last().unwrap().approvals.iter().map(|a| a.approver.as_str()).collect();
    assert_eq!(signed_by, ["dave"]);
    // Every release so far, that revocation's included, verifies in the checker.
    let report = check(&gw.state, &Evidence::default()).await.unwrap();
    assert!(report.ok(), "{:?}", report.violations);

    // Attack: a key row for carol written by SQL (here a stranger's enrolled key,
    // moved to carol and activated). The gateway's tables now let it log in as
    // carol and approve; the gateway refuses to release, settlement would refuse
    // the release, and the checker names the row.
    let forged_key = soft_key();
    let forged_id = invited(&dave, "zed", forged_key.clone()).await.credential_id;
    sqlx::query("UPDATE credentials SET approver_id = 'carol', status = 'active' WHERE id = $1")
        .bind(&forged_id)
        .execute(gw.state.store.pool())
        .await
        .unwrap();
    let impostor = Person {
        id: "carol",
        session: carol.client.login("carol", forged_key.clone(), &ceremony()).await.unwrap(),
        client: carol.client.clone(),
        key: forged_key,
    };
    let held = gw.withdraw(&key, &eth("6")).await.op_id();
    approve(&alice, &held).await;
    let challenge = impostor.client.challenge(&impostor.session, &held, Decision::Approve).await.unwrap();
    let err = impostor
        .client
        .sign_decision(&impostor.session, challenge, None, impostor.key.clone(), &ceremony())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "authority.release_refused", "{err:?}");
    assert!(gw.audit_events().await.iter().any(|e| e == "release.refused_by_authority"));
    let op = gw.state.store.operation(&held).await.unwrap().unwrap();
    assert_eq!(op.state.as_str(), "pending");
    // People reading it check each decision against the chain's keys, not the
    // gateway's: the impostor's signature is by a key the chain does not know.
    let seen = alice.client.pending(&alice.session).await.unwrap();
    let seen = seen.iter().find(|o| o.operation.id.to_string() == held).unwrap();
    let checks: Vec<_> = seen.decisions.iter().map(|d| (d.approver.as_str(), d.check.clone())).collect();
    assert!(checks.contains(&("alice", DecisionCheck::Signed)), "{checks:?}");
    assert!(checks.contains(&("carol", DecisionCheck::KeyNotInRegistry)), "{checks:?}");
    // The release the gateway's key would have signed from its tables: refused.
    let mut conn = gw.state.store.pool().acquire().await.unwrap();
    let approvals: Vec<CertifiedApproval> = gw
        .state
        .store
        .decisions_with_keys_in(&mut conn, &held)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.signed)
        .collect();
    drop(conn);
    let forged_doc = sign_release(
        &op.operation,
        ReleaseBasis::Quorum,
        Some(quorum(&[("traders", 2)])),
        approvals,
        gw.now(),
        Some(settlement.head().clone()),
        gw.state.keys.signing_key(),
    )
    .unwrap();
    let refused =
        verify_release_from_genesis(&serde_json::to_vec(&forged_doc).unwrap(), &trusted, &settlement);
    assert_eq!(refused.unwrap_err().code(), "certificate.unknown_credential");
    let found = violations(&gw).await;
    assert!(found.contains(&("authority.credential".into(), format!("carol/{forged_id}"))), "{found:?}");

    // Attack: roles and groups edited by SQL.
    sqlx::query("UPDATE approvers SET roles = '[\"admin\",\"approver\"]' WHERE id = 'alice'")
        .execute(gw.state.store.pool())
        .await
        .unwrap();
    let found = violations(&gw).await;
    assert!(found.contains(&("authority.person".into(), "alice".into())), "{found:?}");

    // Attack: link 1 rewritten in the database with one admin's approval only (as if
    // the gateway had applied gina's enrolment on erin's word alone). A fresh
    // verifier refuses the chain, one that held link 1 sees a rewritten history, and
    // the checker names it.
    let mut rewritten = doc.links[0].clone();
    rewritten.approvals.truncate(1);
    sqlx::query("UPDATE authority_links SET link = $1 WHERE idx = 1")
        .bind(serde_json::to_string(&rewritten).unwrap())
        .execute(gw.state.store.pool())
        .await
        .unwrap();
    let served = alice.client.authority().await.unwrap();
    let fresh = countersign_core::authority::Authority::from_document(&hash, &served);
    assert_eq!(fresh.unwrap_err().code(), "authority.quorum_not_met");
    assert_eq!(settlement.extend(&served.links).unwrap_err().code(), "authority.fork");
    let found = violations(&gw).await;
    assert!(found.contains(&("authority.chain".into(), "authority.quorum_not_met".into())), "{found:?}");
    // A gateway instance starting on these tables releases nothing, not even what
    // the policy allows without approval, until the chain verifies again.
    let config = (*gw.state.config).clone();
    let another = countersign_gateway::AppState::open(config, gw.state.clock.clone()).await.unwrap();
    let refused = countersign_gateway::authority::refresh(&another).await.unwrap_err();
    assert_eq!(refused.code, "authority.quorum_not_met");
    assert_eq!(countersign_gateway::authority::head(&another).unwrap_err().code, "authority.unverified");
}

async fn carol_key_id(gw: &Gateway) -> String {
    let keys = gw.state.store.credentials_of(&"carol".parse().unwrap(), true).await.unwrap();
    keys[0].id.clone()
}
