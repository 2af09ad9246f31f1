//! The promise, end to end: a gateway on port 0 over pinned HTTPS, approvers on
//! software keys through `countersign-client` and the real CTAP2 layer, and an
//! exchange settlement service that verifies every release offline and refuses
//! anything else. Each scenario runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

#[allow(dead_code, unused_imports)]
#[path = "../../crates/gateway/tests/gateway/support.rs"]
mod support;

mod invariants;
mod settlement;

use countersign_client::{Client, EnrollmentLink, Error, Session, VerifiedOperation};
use countersign_core::operation::Role;
use countersign_core::{Action, Decision};
use countersign_softkey::SoftKey;
use invariants::the_invariant_checker_passes_a_real_run_and_names_each_broken_promise;
use serde_json::{Value, json};
use settlement::Settlement;
use support::*;

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { crate::$name(crate::support::Db::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { crate::$name(crate::support::Db::Postgres).await })*
        }
    };
}

both!(
    a_large_withdrawal_is_released_once_with_a_certificate_settlement_accepts,
    one_rejection_vetoes_and_an_unanswered_operation_expires,
    stolen_api_keys_cannot_move_large_sums,
    an_altered_operation_is_refused_by_the_client_and_by_the_gateway,
    settlement_refuses_what_the_quorum_did_not_sign,
    a_new_approver_counts_only_after_the_admins_approve,
    the_invariant_checker_passes_a_real_run_and_names_each_broken_promise,
);

/// A person with roles and groups, enrolled from a bootstrap link and logged in.
async fn person(gw: &Gateway, id: &str, roles: &[Role], groups: &[&str]) -> (Client, Session, SoftKey) {
    let link = EnrollmentLink::parse(&bootstrap_link(gw, id, roles, groups).await).unwrap();
    let client = Client::for_link(&link).unwrap();
    let key = soft_key();
    client.enroll(&link.code, "key", key.clone(), &ceremony()).await.unwrap();
    let session = client.login(id, key.clone(), &ceremony()).await.unwrap();
    (client, session, key)
}

async fn decide(who: &(Client, Session, SoftKey), id: &str, decision: Decision) -> Result<Value, Error> {
    let (client, session, key) = who;
    let challenge = client.challenge(session, id, decision).await?;
    client.sign_decision(session, challenge, Some("scenario"), key.clone(), &ceremony()).await
}

async fn state_of(gw: &Gateway, id: &str) -> String {
    gw.state.store.operation(id).await.unwrap().unwrap().state.as_str().to_owned()
}

/// The founding people sign the genesis the host drafted; returns its hash, which
/// settlement pins.
async fn found_the_chain(gw: &Gateway, people: &[(&str, &(Client, Session, SoftKey))]) -> String {
    let hash = countersign_gateway::authority::draft(&gw.state, gw.now()).await.unwrap().hash;
    for (id, (client, session, key)) in people {
        client.sign_genesis(session, id, &hash, key.clone(), &ceremony()).await.unwrap();
    }
    hash
}

pub async fn a_large_withdrawal_is_released_once_with_a_certificate_settlement_accepts(db: Db) {
    let gw = Gateway::start_tls(db).await;
    let alice = approver(&gw, "alice").await;
    let carol = approver(&gw, "carol").await;
    let dave = approver(&gw, "dave").await;
    let bob = approver(&gw, "bob").await; // owns the bot's key
    let erin = person(&gw, "erin", &[Role::Admin], &["admins"]).await;
    let key = gw.api_key("key_bot1", KeySpec::default()).await;
    let founders = [("alice", &alice), ("carol", &carol), ("dave", &dave), ("bob", &bob), ("erin", &erin)];
    let genesis = found_the_chain(&gw, &founders).await;
    // Settlement pins the genesis hash: who may approve comes from the chain.
    let sink = Settlement::pinned(&gw, &genesis).await;

    // A small one, allowed by the chain's policy, from a key the chain lists.
    let small = gw.withdraw(&key, &eth("0.5")).await;
    assert_eq!(small.state(), "released", "{:?}", small.body);
    let small = small.op_id();
    sink.deliver(&gw).await;
    assert_eq!(sink.accepted(), vec![small.clone()]);

    let id = gw.withdraw(&key, &eth("12.5")).await.op_id();
    assert_eq!(state_of(&gw, &id).await, "pending", "$37,500 waits for two traders");
    assert_eq!(decide(&alice, &id, Decision::Approve).await.unwrap()["state"], "pending");
    assert_eq!(decide(&carol, &id, Decision::Approve).await.unwrap()["state"], "released");

    // Delivered to settlement exactly once, however often delivery runs.
    for _ in 0..3 {
        sink.deliver(&gw).await;
    }
    // The settlement's chain was extended with what is new (nothing) and reused.
    let mut both = vec![id.clone(), small];
    both.sort();
    assert_eq!(sink.accepted(), both);
    assert!(sink.refused().is_empty(), "{:?}", sink.refused());

    // A third approval after release is refused.
    let err = decide(&dave, &id, Decision::Approve).await.unwrap_err();
    assert_eq!(err.code(), "decision.not_pending");
}

pub async fn one_rejection_vetoes_and_an_unanswered_operation_expires(db: Db) {
    let gw = Gateway::start_tls(db).await;
    let sink = Settlement::start(&gw).await;
    let alice = approver(&gw, "alice").await;
    let carol = approver(&gw, "carol").await;
    let key = gw.api_key("key_bot1", KeySpec::default()).await;

    let vetoed = gw.withdraw(&key, &eth("12.5")).await.op_id();
    gw.clock.advance(1); // so "newest first" below has one answer
    let ignored = gw.withdraw(&key, &eth("13")).await.op_id();
    assert_eq!(decide(&alice, &vetoed, Decision::Reject).await.unwrap()["state"], "rejected");
    assert_eq!(decide(&carol, &vetoed, Decision::Approve).await.unwrap_err().code(), "decision.not_pending");

    gw.clock.advance(3601);
    countersign_gateway::sweep::sweep_once(&gw.state, gw.now()).await.unwrap();
    assert_eq!(state_of(&gw, &ignored).await, "expired");
    // An hour later carol's session has ended too (sessions last 15 minutes).
    assert_eq!(decide(&carol, &ignored, Decision::Approve).await.unwrap_err().code(), "session.invalid");
    let session = carol.0.login("carol", carol.2.clone(), &ceremony()).await.unwrap();
    let carol = (carol.0, session, carol.2);
    assert_eq!(decide(&carol, &ignored, Decision::Approve).await.unwrap_err().code(), "decision.not_pending");
    sink.deliver(&gw).await;
    assert!(sink.accepted().is_empty(), "nothing reached settlement");

    // Both are history now, newest first, verified like pending ones; none is pending.
    let history = carol.0.history(&carol.1).await.unwrap();
    let seen: Vec<(String, String)> =
        history.iter().map(|o| (o.operation.id.to_string(), o.state.clone())).collect();
    assert_eq!(seen, vec![(ignored.clone(), "expired".into()), (vetoed, "rejected".into())]);
    assert!(carol.0.pending(&carol.1).await.unwrap().is_empty());
    // A view that does not exist is a clear error, not an empty list.
    let url = format!("{}/v1/approver/operations?view=everything", gw.base);
    let r = Reply::from(gw.http.get(url).bearer_auth(carol.1.expose()).send().await.unwrap()).await;
    assert_eq!((r.status, r.code()), (400, "request.bad_query"), "{r:?}");
}

/// The November 2023 incident: the attacker holds every API key and sends from an
/// allowed address.
pub async fn stolen_api_keys_cannot_move_large_sums(db: Db) {
    let gw = Gateway::start_tls(db).await;
    let sink = Settlement::start(&gw).await;
    let admin = [Role::Admin, Role::Approver];
    let erin = person(&gw, "erin", &admin, &["admins", "traders"]).await;
    let alice = person(&gw, "alice", &admin, &["admins", "traders"]).await;
    let dave = person(&gw, "dave", &admin, &["admins", "traders"]).await;
    let stolen = [
        gw.api_key("key_mm1", KeySpec::default()).await,
        gw.api_key(
            "key_mm2",
            KeySpec {
                algorithm: countersign_core::operation::SigningAlgorithm::HmacSha256,
                ..KeySpec::default()
            },
        )
        .await,
    ];

    // Everything above the threshold is held.
    for key in &stolen {
        let r = gw.withdraw(key, &eth_to("40", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")).await;
        assert_eq!(r.state(), "pending");
    }
    // Small ones flow only until the key's hourly budget ($25,000) is spent.
    let mut released = 0u32;
    let mut held_with_velocity_signal = 0u32;
    for _ in 0..15 {
        let r = gw.withdraw(&stolen[0], &eth_to("0.8", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")).await;
        match r.state() {
            "released" => released += 1,
            "pending" => {
                let op = gw.state.store.operation(&r.op_id()).await.unwrap().unwrap();
                let signals = op.risk.unwrap()["signals"].to_string();
                if signals.contains("velocity_budget") {
                    held_with_velocity_signal += 1;
                }
            }
            other => panic!("{other}"),
        }
    }
    assert!(f64::from(released) * 2400.0 <= 25_000.0, "{released} small withdrawals released");
    assert!(held_with_velocity_signal >= 5, "the rest held, with the velocity signal");
    sink.deliver(&gw).await;
    assert_eq!(sink.accepted().len(), usize::try_from(released).unwrap(), "only the small ones settled");

    // One approver freezes every key with a touch.
    let (client, session, key) = &alice;
    assert!(client.freeze(session, "stolen keys", key.clone(), &ceremony()).await.unwrap());
    for key in &stolen {
        assert_eq!(gw.withdraw(key, &eth("0.1")).await.code(), "auth.frozen");
    }

    // Unfreezing is an operation for the admin quorum; the proposer cannot decide it.
    let freeze = gw.state.store.freeze_state().await.unwrap();
    let (client, session, _) = &erin;
    let proposed = client
        .propose(
            session,
            json!({"kind": "unfreeze", "details": {"freeze_started": freeze.changed_at.to_string(), "reason": "keys rotated"}}),
        )
        .await
        .unwrap();
    let id = proposed.operation.id.to_string();
    assert_eq!(decide(&erin, &id, Decision::Approve).await.unwrap_err().code(), "decision.initiator");
    assert_eq!(decide(&alice, &id, Decision::Approve).await.unwrap()["state"], "pending");
    assert_eq!(
        gw.withdraw(&stolen[1], &eth("0.1")).await.code(),
        "auth.frozen",
        "still frozen with one admin"
    );
    assert_eq!(decide(&dave, &id, Decision::Approve).await.unwrap()["state"], "released");
    assert!(!gw.state.store.freeze_state().await.unwrap().frozen);
}

pub async fn an_altered_operation_is_refused_by_the_client_and_by_the_gateway(db: Db) {
    let gw = Gateway::start_tls(db).await;
    let (client, session, key) = approver(&gw, "alice").await;
    let bot = gw.api_key("key_bot1", KeySpec::default()).await;
    let id = gw.withdraw(&bot, &eth("12.5")).await.op_id();

    // 1. Shown 1.25 ETH while the canonical operation says 12.5: the client refuses
    //    before the key is asked (the desktop and the CLI show only what it verified).
    let genuine = client.challenge(&session, &id, Decision::Approve).await.unwrap().operation;
    let canonical =
        String::from_utf8(countersign_core::canonical::encode(&genuine.operation).unwrap()).unwrap();
    let mut view = json!({
        "state": "pending", "canonical": canonical, "digest": genuine.digest, "fingerprint": genuine.fingerprint,
        "operation": genuine.operation, "verdict": genuine.verdict, "risk": genuine.risk,
    });
    assert!(VerifiedOperation::from_view(&view).is_ok());
    view["operation"]["action"]["details"]["amount"] = json!("1.25");
    assert_eq!(VerifiedOperation::from_view(&view).unwrap_err().code(), "client.tampered");

    // 2. A consistent forgery (re-encoded for 1.25 ETH to another address) gets the
    //    key's signature, bound to the forgery's digest: the gateway refuses it.
    let mut shown = genuine.operation.clone();
    if let Action::Withdrawal(w) = &mut shown.action {
        w.amount = "1.25".parse().unwrap();
        w.destination.address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into();
    }
    let binding = countersign_core::ApprovalBinding::new(&shown, Decision::Approve).unwrap();
    let r: Value = gw
        .http
        .post(format!("{}/v1/operations/{id}/challenge", gw.base))
        .bearer_auth(session.expose())
        .json(&json!({"decision": "approve"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let options: webauthn_rs::prelude::RequestChallengeResponse =
        serde_json::from_value(r["options"].clone()).unwrap();
    let origin = client.info().await.unwrap().origin;
    let challenge = data_encoding::BASE64URL_NOPAD.encode(&options.public_key.challenge);
    let cdj = countersign_core::binding::client_data_json(&challenge, &origin, &binding).unwrap();
    let credential = countersign_keys::sign(key, &ceremony(), options.public_key, cdj).await.unwrap();
    let refused: Value = gw
        .http
        .post(format!("{}/v1/operations/{id}/decisions", gw.base))
        .bearer_auth(session.expose())
        .json(&json!({"ceremony": r["ceremony"], "credential": credential}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refused["error"]["code"], "binding.digest_mismatch", "{refused}");
    assert_eq!(state_of(&gw, &id).await, "pending", "nothing counted");
}

pub async fn settlement_refuses_what_the_quorum_did_not_sign(db: Db) {
    let gw = Gateway::start_tls(db).await;
    let sink = Settlement::start(&gw).await;
    let alice = approver(&gw, "alice").await;
    let carol = approver(&gw, "carol").await;
    let bot = gw.api_key("key_bot1", KeySpec::default()).await;
    let mut docs = Vec::new();
    for amount in ["12.5", "20"] {
        let id = gw.withdraw(&bot, &eth(amount)).await.op_id();
        decide(&alice, &id, Decision::Approve).await.unwrap();
        decide(&carol, &id, Decision::Approve).await.unwrap();
        let ledger = gw.state.store.ledger().await.unwrap();
        docs.push(ledger.iter().find(|l| l.operation_id == id).unwrap().certificate.clone());
    }
    assert!(sink.verify(&gw, &docs[0]).await.is_ok(), "the genuine document is accepted");

    // A large transfer with no approvals.
    let mut bare = docs[0].clone();
    bare["approvals"] = json!([]);
    assert!(sink.verify(&gw, &bare).await.is_err());
    // The certificate of one operation presented for another.
    let mut swapped = docs[0].clone();
    swapped["operation"] = docs[1]["operation"].clone();
    assert!(sink.verify(&gw, &swapped).await.is_err());
    // After an approver is revoked, releases that rest on their approval are refused.
    assert!(
        countersign_gateway::approvers::revoke(&gw.state, &"alice".parse().unwrap(), "host", gw.now())
            .await
            .unwrap()
    );
    let err = sink.verify(&gw, &docs[0]).await.unwrap_err();
    assert!(!err.is_empty());
}

pub async fn a_new_approver_counts_only_after_the_admins_approve(db: Db) {
    let gw = Gateway::start_tls(db).await;
    let admin = [Role::Admin, Role::Approver];
    let erin = person(&gw, "erin", &admin, &["admins", "traders"]).await;
    let alice = person(&gw, "alice", &admin, &["admins", "traders"]).await;
    let dave = person(&gw, "dave", &admin, &["admins", "traders"]).await;
    let bot = gw.api_key("key_bot1", KeySpec::default()).await;
    let id = gw.withdraw(&bot, &eth("12.5")).await.op_id();

    // erin invites carol; carol enrolls; her key waits for the admin quorum.
    let (client, session, _) = &erin;
    let link =
        client.invite(session, "carol", "Carol", &["approver".into()], &["traders".into()]).await.unwrap();
    let link = EnrollmentLink::parse(&link).unwrap();
    let carol_client = Client::for_link(&link).unwrap();
    let carol_key = soft_key();
    let enrolled = carol_client.enroll(&link.code, "key", carol_key.clone(), &ceremony()).await.unwrap();
    assert_eq!(enrolled.status, "pending_approval");
    let err = carol_client.login("carol", carol_key.clone(), &ceremony()).await.unwrap_err();
    assert_eq!(err.code(), "key.credential_not_found", "her key cannot log in (yet), so cannot approve");

    // alice approves the withdrawal; carol's approval is not possible yet.
    assert_eq!(decide(&alice, &id, Decision::Approve).await.unwrap()["state"], "pending");
    let enroll_op = alice
        .0
        .pending(&alice.1)
        .await
        .unwrap()
        .into_iter()
        .find(|o| matches!(o.operation.action, Action::ApproverEnroll(_)))
        .unwrap();
    let enroll_id = enroll_op.operation.id.to_string();
    assert_eq!(decide(&alice, &enroll_id, Decision::Approve).await.unwrap()["state"], "pending");
    assert_eq!(decide(&dave, &enroll_id, Decision::Approve).await.unwrap()["state"], "released");

    // Now her key counts.
    let carol_session = carol_client.login("carol", carol_key.clone(), &ceremony()).await.unwrap();
    let carol = (carol_client, carol_session, carol_key);
    assert_eq!(decide(&carol, &id, Decision::Approve).await.unwrap()["state"], "released");
}
