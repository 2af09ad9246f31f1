//! Regression tests for the security review (issue 18): each test names the defect
//! it shows fixed, and each failed on the code before its fix.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use countersign_core::Decision;
use countersign_core::operation::Role;
use countersign_core::policy::Breach;
use countersign_gateway::race::Window;
use serde_json::{Value, json};
use webauthn_rs::prelude::{AttestationCaList, CreationChallengeResponse};

use crate::approvals::*;
use crate::support::*;

const ADMIN: [Role; 2] = [Role::Admin, Role::Approver];
const XRP_DEPOSIT: &str = "rPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY";

fn xrp(amount: &str, memo: &str) -> Value {
    json!({
        "account": "acct_main", "asset": "XRP", "network": "xrpl", "amount": amount,
        "destination": {"address": XRP_DEPOSIT, "memo": memo},
    })
}

/// Three admins (alice proposes, dave and erin approve) on a gateway with `policy`.
async fn admins(db: Db, policy: countersign_core::policy::Policy) -> (Gateway, [Approver; 3]) {
    let (gw, mut tokens) = gateway_with_policy_and_tokens(db, policy, 3).await;
    let alice = enroll_as(&gw, "alice", &ADMIN, &["admins", "traders"], None, tokens.remove(0)).await;
    let dave = enroll_as(&gw, "dave", &ADMIN, &["admins", "traders"], None, tokens.remove(0)).await;
    let erin = enroll_as(&gw, "erin", &ADMIN, &["admins", "traders"], None, tokens.remove(0)).await;
    (gw, [alice, dave, erin])
}

async fn propose(gw: &Gateway, who: &Approver, action: Value) -> Reply {
    post(gw, "/v1/admin/operations", Some(&who.session), json!({"action": action})).await
}

fn allowlist_add(network: &str, address: &str, memo: Option<&str>) -> Value {
    json!({"kind": "allowlist_add", "details": {
        "account": "acct_main", "network": network,
        "destination": {"address": address, "memo": memo}, "label": "exchange deposit",
    }})
}

async fn count(gw: &Gateway, event: &str) -> usize {
    gw.audit_events().await.iter().filter(|e| *e == event).count()
}

/// #18.1: an allowlisted deposit address with another memo / destination tag is
/// another beneficiary. A stolen key cannot ride the exchange's allowlisted deposit
/// address with its own tag.
pub async fn the_allowlist_matches_the_memo_too(db: Db) {
    let mut p = policy();
    p.allowlist.enforced = true;
    p.allowlist.on_breach = Breach::RequireApproval;
    let (gw, [alice, mut dave, mut erin]) = admins(db, p).await;
    // A memo is required on the XRP Ledger: an entry without one is refused before
    // anything is stored.
    let r = propose(&gw, &alice, allowlist_add("xrpl", XRP_DEPOSIT, None)).await;
    assert_eq!((r.status, r.code()), (400, "request.bad_memo"), "{:?}", r.body);
    let r = propose(&gw, &alice, allowlist_add("xrpl", XRP_DEPOSIT, Some("1001"))).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let r = approve_both(&gw, &mut dave, &mut erin, r.op_id()).await;
    assert_eq!(r.body["state"], "released", "{:?}", r.body);
    gw.clock.advance(86_401); // past the cool-off

    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let ours = gw.withdraw(&key, &xrp("100", "1001")).await;
    assert_eq!(ours.state(), "released", "the allowlisted destination: {:?}", ours.body);
    let theirs = gw.withdraw(&key, &xrp("100", "666")).await;
    assert_eq!(theirs.state(), "pending", "same address, the attacker's tag: {:?}", theirs.body);
    assert_eq!(theirs.body["verdict"]["reasons"][0]["reason"], "destination_not_allowlisted");
    // Every card shows the memo: it is part of the operation approvers sign.
    assert_eq!(theirs.body["operation"]["action"]["details"]["destination"]["memo"], "666");
}

async fn approve_both(gw: &Gateway, a: &mut Approver, b: &mut Approver, id: String) -> Reply {
    decide(gw, a, &id, Decision::Approve, &same).await;
    decide(gw, b, &id, Decision::Approve, &same).await
}

/// #18.2: an approved `allowlist_add` whose destination was listed meanwhile is
/// released and recorded stale (it no longer fails the release), and a duplicate is
/// refused when proposed.
pub async fn a_duplicate_allowlist_entry_is_refused_or_recorded_stale(db: Db) {
    let (gw, [alice, mut dave, mut erin]) = admins(db, policy()).await;
    let dest = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    let first = propose(&gw, &alice, allowlist_add("ethereum", dest, None)).await.op_id();
    let second = propose(&gw, &alice, allowlist_add("ethereum", dest, None)).await.op_id();
    assert_eq!(approve_both(&gw, &mut dave, &mut erin, first).await.body["state"], "released");
    let r = approve_both(&gw, &mut dave, &mut erin, second).await;
    assert_eq!((r.status, r.body["state"].clone()), (200, json!("released")), "{:?}", r.body);
    assert_eq!(count(&gw, "allowlist.added").await, 1);
    assert_eq!(count(&gw, "allowlist.stale").await, 1);
    let r = propose(&gw, &alice, allowlist_add("ethereum", dest, None)).await;
    assert_eq!((r.status, r.code()), (409, "allowlist.exists"), "{:?}", r.body);
}

/// #18.2: one operation that cannot be settled (here its stored verdict is damaged)
/// never stops the sweep: expiry, nonces and the audit checkpoint still happen.
pub async fn one_bad_operation_never_stops_the_sweep(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 2).await;
    let mut alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let _carol = enroll(&gw, "carol", &["traders"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let due = gw.withdraw(&key, &eth("6")).await.op_id();
    gw.clock.advance(3590);
    alice.session = login(&gw, &mut alice).await.body["token"].as_str().unwrap().to_owned();
    let bad = gw.withdraw(&key, &eth("5")).await.op_id();
    decide(&gw, &mut alice, &bad, Decision::Approve, &same).await;
    sqlx::query("UPDATE operations SET verdict = 'null' WHERE id = $1")
        .bind(&bad)
        .execute(gw.state.store.pool())
        .await
        .unwrap();
    gw.clock.advance(20); // `due` is past its expiry; `bad` waits, with a decision to settle

    // Checkpoint after every entry, so one is due now.
    let mut state = gw.state.clone();
    let mut config = (*state.config).clone();
    config.checkpoint_every = 1;
    state.config = Arc::new(config);
    let expired = countersign_gateway::sweep::sweep_once(&state, gw.now()).await.unwrap();
    assert!(expired >= 1, "the due operation expired");
    assert_eq!(gw.state.store.operation(&due).await.unwrap().unwrap().state.as_str(), "expired");
    let head = gw.state.store.audit_head().await.unwrap();
    let checkpoint: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints")
        .fetch_one(gw.state.store.pool())
        .await
        .unwrap();
    assert_eq!(checkpoint, Some(head), "the checkpoint step ran after the failing settlement");
}

/// #18.3: a veto never loses a race with the approval that completes a quorum. The
/// settlement's window between reading the decisions and moving the operation is
/// widened; rejections are sent into it at several offsets. No released operation
/// may have a counted rejection.
pub async fn a_veto_never_loses_a_race_with_a_release(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 3).await;
    let mut alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let mut carol = enroll(&gw, "carol", &["traders"], tokens.remove(0)).await;
    let mut dave = enroll(&gw, "dave", &["traders"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    gw.state.race_windows.widen(Window::Settle, Duration::from_millis(150));
    for offset_ms in [0_u64, 20, 50, 90, 130, 200] {
        let id = gw.withdraw(&key, &eth("4")).await.op_id(); // $12,000: two traders
        decide(&gw, &mut alice, &id, Decision::Approve, &same).await;
        let (c_ceremony, c_credential) = sign_decision(&gw, &mut carol, &id, Decision::Approve, &same).await;
        let (d_ceremony, d_credential) = sign_decision(&gw, &mut dave, &id, Decision::Reject, &same).await;
        let path = format!("/v1/operations/{id}/decisions");
        let approve = post(
            &gw,
            &path,
            Some(&carol.session),
            json!({"ceremony": c_ceremony, "credential": c_credential}),
        );
        let veto = async {
            tokio::time::sleep(Duration::from_millis(offset_ms)).await;
            post(&gw, &path, Some(&dave.session), json!({"ceremony": d_ceremony, "credential": d_credential}))
                .await
        };
        let (a, v) = tokio::join!(approve, veto);
        let final_state = gw.state.store.operation(&id).await.unwrap().unwrap().state;
        let rejections: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM decisions WHERE operation_id = $1 AND decision = 'reject'",
        )
        .bind(&id)
        .fetch_one(gw.state.store.pool())
        .await
        .unwrap();
        match final_state.as_str() {
            "released" => {
                assert_eq!(rejections, 0, "offset {offset_ms} ms: released with a counted veto: {a:?} {v:?}");
                assert_eq!((v.status, v.code()), (409, "decision.not_pending"), "offset {offset_ms} ms");
            }
            "rejected" => assert_eq!(rejections, 1, "offset {offset_ms} ms"),
            other => panic!("offset {offset_ms} ms: {other}: {a:?} {v:?}"),
        }
    }
    gw.state.race_windows.widen(Window::Settle, Duration::ZERO);
    let evidence = countersign_gateway::invariants::Evidence::default();
    let report = countersign_gateway::invariants::check(&gw.state, &evidence).await.unwrap();
    assert!(report.ok(), "{report}");
    // The checker names a release with a counted rejection (here forged by SQL).
    let released: String =
        sqlx::query_scalar("SELECT operation_id FROM settlement_ledger ORDER BY operation_id LIMIT 1")
            .fetch_one(gw.state.store.pool())
            .await
            .unwrap();
    sqlx::query("UPDATE decisions SET decision = 'reject' WHERE operation_id = $1")
        .bind(&released)
        .execute(gw.state.store.pool())
        .await
        .unwrap();
    let report = countersign_gateway::invariants::check(&gw.state, &evidence).await.unwrap();
    assert!(report.broken_rules().contains("release.vetoed"), "{report}");
}

/// #18.7: a stolen session without the key cannot write "substituted operation"
/// evidence against its owner: a refusal is audited only once the signature verifies,
/// and then at most once a minute.
pub async fn binding_refusals_are_audited_only_over_a_real_signature(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 2).await;
    let mut alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let _carol = enroll(&gw, "carol", &["traders"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let id = gw.withdraw(&key, &eth("5")).await.op_id();
    let path = format!("/v1/operations/{id}/decisions");
    let substitute = |s: String| {
        let v: Value = serde_json::from_str(&s).unwrap();
        let digest = v["countersign"]["digest"].as_str().unwrap().to_owned();
        let other = format!("{}{}", if digest.starts_with('A') { "B" } else { "A" }, &digest[1..]);
        s.replace(&digest, &other)
    };
    // Forged: the session holder edits clientDataJSON after the key signed.
    for _ in 0..3 {
        let (ceremony, mut credential) = sign_decision(&gw, &mut alice, &id, Decision::Approve, &same).await;
        let cdj = String::from_utf8(credential.response.client_data_json.to_vec()).unwrap();
        credential.response.client_data_json = substitute(cdj).into_bytes();
        let r =
            post(&gw, &path, Some(&alice.session), json!({"ceremony": ceremony, "credential": credential}))
                .await;
        assert_eq!((r.status, r.code()), (401, "assertion.bad_signature"), "{:?}", r.body);
    }
    assert_eq!(count(&gw, "decision.binding_refused").await, 0, "no evidence from forged signatures");
    // The probing itself is on record, by source address, once a minute per code.
    assert_eq!(count(&gw, "ceremony.refused").await, 1);
    // Really signed by alice's key over another digest: evidence, once a minute.
    for _ in 0..3 {
        let r = decide(&gw, &mut alice, &id, Decision::Approve, &substitute).await;
        assert_eq!((r.status, r.code()), (400, "binding.digest_mismatch"), "{:?}", r.body);
    }
    assert_eq!(count(&gw, "decision.binding_refused").await, 1);
    assert_eq!(count(&gw, "decision.counted").await, 0);
}

/// #18.8: freezing while frozen is audited and cancels an unfreeze that waits for
/// approval.
pub async fn freezing_again_is_audited_and_cancels_a_pending_unfreeze(db: Db) {
    let gw = Gateway::start(db).await;
    assert!(gw.state.store.freeze("approver:carol", "suspicious traffic", gw.now()).await.unwrap());
    let proposer = "alice".parse().unwrap();
    let unfreeze =
        countersign_gateway::approvers::propose_unfreeze(&gw.state, &proposer, "keys rotated", gw.now())
            .await
            .unwrap();
    gw.clock.advance(30);
    let again = gw.state.store.freeze("approver:dave", "more of it", gw.now()).await.unwrap();
    assert!(!again, "already frozen");
    let op = gw.state.store.operation(unfreeze.operation.id.as_str()).await.unwrap().unwrap();
    assert_eq!(op.state.as_str(), "cancelled");
    assert_eq!(count(&gw, "freeze.repeated").await, 1);
    assert_eq!(count(&gw, "operation.cancelled").await, 1);
    assert!(gw.state.store.freeze_state().await.unwrap().frozen);
}

/// #18.9: a bad key label is refused before the enrollment code is used, and a bad
/// name before a code is issued (host bootstrap and admin invitations alike).
pub async fn bad_labels_and_names_are_refused_before_any_write(db: Db) {
    let (gw, [alice, ..]) = admins(db, policy()).await;
    let frank: countersign_core::id::ApproverId = "frank".parse().unwrap();
    let roles: BTreeSet<Role> = [Role::Approver].into();
    let groups = ["traders".parse().unwrap()].into();
    let alice_id: countersign_core::id::ApproverId = "alice".parse().unwrap();
    for by in [None, Some(&alice_id)] {
        // The host's bootstrap and an admin's invitation alike.
        let bad_name = countersign_gateway::approvers::issue_enrollment_code(
            &gw.state,
            &frank,
            "Frank\u{202E}knarF",
            &roles,
            &groups,
            by,
            gw.now(),
        )
        .await
        .unwrap_err();
        assert_eq!(bad_name.code, "approver.bad_name", "issued by {by:?}");
    }
    let people: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM approvers WHERE id = 'frank'")
        .fetch_one(gw.state.store.pool())
        .await
        .unwrap();
    assert_eq!(people, 0, "nothing written");
    let code = countersign_gateway::approvers::issue_enrollment_code(
        &gw.state,
        &frank,
        "Frank",
        &roles,
        &groups,
        Some(&"alice".parse().unwrap()),
        gw.now(),
    )
    .await
    .unwrap();
    let token = soft_tokens(1).remove(0);
    let enroll_with = |label: &'static str| {
        let (gw, code, token) = (&gw, code.clone(), token.clone());
        async move {
            let r = post(gw, "/v1/enroll/start", None, json!({"code": code})).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let options: CreationChallengeResponse =
                serde_json::from_value(r.body["options"].clone()).unwrap();
            let credential =
                countersign_keys::register(token, &ceremony(), options.public_key, "https://localhost")
                    .await
                    .unwrap();
            post(
                gw,
                "/v1/enroll/finish",
                None,
                json!({"ceremony": r.body["ceremony"], "label": label, "credential": credential}),
            )
            .await
        }
    };
    let r = enroll_with("desk key\u{0007}").await;
    assert_eq!((r.status, r.code()), (400, "enroll.bad_label"), "{:?}", r.body);
    let r = enroll_with("desk key").await;
    assert_eq!((r.status, r.body["status"].clone()), (200, json!("pending_approval")), "{:?}", r.body);
    let proposals: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM operations WHERE kind = 'approver_enroll' AND state = 'pending'",
    )
    .fetch_one(gw.state.store.pool())
    .await
    .unwrap();
    assert_eq!(proposals, 1, "the enrollment waits for the admin quorum");
    drop(alice);
}

/// #18.12: the per-key and per-account serialisation of intake is what keeps a burst
/// within the velocity budget: with the window between reading the spending and
/// storing the withdrawal widened, only the lock keeps the requests apart (this
/// test fails when `Store::begin_intake` takes no lock on PostgreSQL).
pub async fn the_intake_lock_holds_a_widened_window(db: Db) {
    let gw = Gateway::start(db).await;
    gw.api_key("key_mm1", KeySpec::default()).await;
    let record = gw.state.store.api_key("key_mm1").await.unwrap().unwrap();
    gw.state.race_windows.widen(Window::Intake, Duration::from_millis(100));
    let body = serde_json::to_vec(&eth("1.5")).unwrap(); // $4,500 each; the budget is $25,000 per hour
    let states = submit_at_once(&gw, &record, &body, 8).await;
    gw.state.race_windows.widen(Window::Intake, Duration::ZERO);
    let released = states.iter().filter(|s| s.as_str() == "released").count();
    assert_eq!(released, 5, "5 × $4,500 fit in $25,000; the rest wait: {states:?}");
}

/// #18.13: attestation refusals, each with its code: a CA the gateway does not
/// trust, a key model (AAGUID) not on the list, and a key that did not apply
/// credProtect.
pub async fn attestation_refusals_have_their_codes(db: Db) {
    let enroll_under = |trust: AttestationCaList, drops_cred_protect: bool| async move {
        let gw = Gateway::start_full(db, policy(), Some(trust)).await;
        let code = countersign_gateway::approvers::issue_enrollment_code(
            &gw.state,
            &"alice".parse().unwrap(),
            "Alice",
            &[Role::Approver].into(),
            &["traders".parse().unwrap()].into(),
            None,
            gw.now(),
        )
        .await
        .unwrap();
        let r = post(&gw, "/v1/enroll/start", None, json!({"code": code})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let options: CreationChallengeResponse = serde_json::from_value(r.body["options"].clone()).unwrap();
        let token = soft_tokens(1).remove(0);
        if drops_cred_protect {
            token.drop_cred_protect();
        }
        let credential =
            countersign_keys::register(token, &ceremony(), options.public_key, "https://localhost")
                .await
                .unwrap();
        let r = post(
            &gw,
            "/v1/enroll/finish",
            None,
            json!({"ceremony": r.body["ceremony"], "label": "soft", "credential": credential}),
        )
        .await;
        let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials")
            .fetch_one(gw.state.store.pool())
            .await
            .unwrap();
        assert_eq!(active, 0, "nothing stored: {:?}", r.body);
        (r.status, r.code().to_owned())
    };
    // Yubico's roots only: the software key's development CA is not among them.
    let yubico = AttestationCaList::try_from(
        include_bytes!("../../attestation/yubico-fido-root-450203556.pem").as_slice(),
    )
    .unwrap();
    assert_eq!(enroll_under(yubico, false).await, (401, "enroll.untrusted_attestation".into()));
    // The right CA, but only for another key model.
    let pem = countersign_softkey::dev_ca_pem().unwrap();
    let mut builder = webauthn_rs::prelude::AttestationCaListBuilder::new();
    builder
        .insert_device_pem(
            pem.as_bytes(),
            webauthn_rs::prelude::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            "another model".into(),
            Default::default(),
        )
        .unwrap();
    assert_eq!(enroll_under(builder.build(), false).await, (401, "enroll.untrusted_aaguid".into()));
    // Trusted, but the key silently did not apply the credProtect it was asked for.
    let trusted = AttestationCaList::try_from(pem.as_bytes()).unwrap();
    assert_eq!(enroll_under(trusted, true).await, (401, "enroll.no_cred_protect".into()));
}

/// #18.5: the relying party is pinned in the profile at enrollment: a gateway that
/// later asks for a signature for another rp id is refused before the key signs.
pub async fn the_client_refuses_a_gateway_asking_for_another_relying_party(db: Db) {
    let gw = Gateway::start_tls(db).await;
    let (client, _session, key) = approver(&gw, "alice").await;
    let pinned = client.relying_party().await.unwrap().clone();
    assert_eq!(
        pinned.rp_id, gw.state.config.webauthn.rp_id,
        "learned at enrollment, over the pinned TLS key"
    );
    // The profile says another relying party than the gateway now asks for.
    let other = countersign_client::RelyingParty {
        rp_id: "exchange.example".into(),
        origin: "https://exchange.example".into(),
    };
    let counter = key.counter();
    let err =
        client.clone().with_relying_party(other).login("alice", key.clone(), &ceremony()).await.unwrap_err();
    assert_eq!(err.code(), "client.rp_changed", "{err:?}");
    assert_eq!(key.counter(), counter, "nothing was signed");
    // The pinned one still works.
    client.with_relying_party(pinned).login("alice", key, &ceremony()).await.unwrap();
}

/// #18.6: a live event stream ends when its session expires, and a person lists only
/// the operations their role and groups can act on.
pub async fn streams_end_with_the_session_and_people_see_only_their_operations(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 2).await;
    let alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let rita = enroll(&gw, "rita", &["risk"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let id = gw.withdraw(&key, &eth("5")).await.op_id();
    let list = |session: String| {
        let gw = &gw;
        async move {
            let r = gw
                .http
                .get(format!("{}/v1/approver/operations", gw.base))
                .bearer_auth(session)
                .send()
                .await
                .unwrap();
            let body: Value = r.json().await.unwrap();
            body["operations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["operation"]["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(alice.session.clone()).await, vec![id.clone()]);
    assert!(list(rita.session.clone()).await.is_empty(), "rita's group is not in the traders' quorum");

    let mut stream =
        gw.http.get(format!("{}/v1/events", gw.base)).bearer_auth(&alice.session).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    gw.clock.advance(i64::try_from(gw.state.config.webauthn.session_ttl_seconds).unwrap() + 1);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while stream.chunk().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream must end when its session expires");
}

/// #18.10: `login/start` does not tell who exists: an unknown, a revoked and a
/// not-yet-approved person get a challenge of the same shape as a real one, with the
/// same credential ids on every call, and finishing it fails with the code a real
/// ceremony gives for the same response.
pub async fn login_start_does_not_reveal_who_exists(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 2).await;
    let mut alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let rita = enroll(&gw, "rita", &["traders"], tokens.remove(0)).await;
    let rita_id = "rita".parse().unwrap();
    countersign_gateway::approvers::revoke(&gw.state, &rita_id, "host", gw.now()).await.unwrap();
    drop(rita);
    let start = |who: &'static str| {
        let gw = &gw;
        async move {
            let r = post(gw, "/v1/login/start", None, json!({"approver": who})).await;
            assert_eq!(r.status, 200, "{who}: {:?}", r.body);
            r.body
        }
    };
    // The shape: every member but the random and per-person values.
    let shape = |body: &Value| {
        let mut o = body["options"].clone();
        o["publicKey"]["challenge"] = json!("<challenge>");
        let ids: Vec<usize> = o["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().len())
            .collect();
        o["publicKey"]["allowCredentials"] = json!(ids);
        (body["ceremony"].as_str().unwrap().len(), o)
    };
    let real = start("alice").await;
    let unknown = start("mallory").await;
    let revoked = start("rita").await;
    assert_eq!(shape(&unknown), shape(&real), "{unknown:#} vs {real:#}");
    assert_eq!(shape(&revoked), shape(&real));
    let again = start("mallory").await;
    let cred = |b: &Value| b["options"]["publicKey"]["allowCredentials"][0]["id"].clone();
    assert_eq!(cred(&again), cred(&unknown), "stable, as a real person's key is");
    assert_ne!(again["options"]["publicKey"]["challenge"], unknown["options"]["publicKey"]["challenge"]);
    assert_ne!(cred(&unknown), cred(&revoked));

    // Finishing: alice's real response, moved onto each ceremony, fails the same way.
    let finish = |body: &Value, credential: &webauthn_rs::prelude::PublicKeyCredential| {
        let gw = &gw;
        let ceremony = body["ceremony"].clone();
        let credential = credential.clone();
        async move {
            post(gw, "/v1/login/finish", None, json!({"ceremony": ceremony, "credential": credential})).await
        }
    };
    let login = login(&gw, &mut alice).await; // a real login works
    assert_eq!(login.status, 200);
    let real = start("alice").await;
    let options: webauthn_rs::prelude::RequestChallengeResponse =
        serde_json::from_value(real["options"].clone()).unwrap();
    let signed = assert_standard(&alice.token, options.public_key).await;
    // 1. A credential the ceremony did not offer.
    let decoy = start("mallory").await;
    let r_real = finish(&start("alice").await, &signed).await; // alice's own key, another challenge
    let mut foreign = signed.clone();
    foreign.raw_id = vec![9; 50];
    foreign.id = data_encoding::BASE64URL_NOPAD.encode(&[9; 50]);
    let r_decoy = finish(&decoy, &foreign).await;
    let r_real_foreign = finish(&start("alice").await, &foreign).await;
    assert_eq!((r_decoy.status, r_decoy.code()), (r_real_foreign.status, r_real_foreign.code()));
    assert_eq!(r_decoy.code(), "assertion.unknown_credential");
    // 2. The offered credential, the wrong challenge: as alice's key on a new challenge.
    let decoy = start("mallory").await;
    let mut moved = signed.clone();
    let decoy_id = decoy["options"]["publicKey"]["allowCredentials"][0]["id"].as_str().unwrap().to_owned();
    moved.raw_id = data_encoding::BASE64URL_NOPAD.decode(decoy_id.as_bytes()).unwrap();
    moved.id = decoy_id;
    let r_decoy = finish(&decoy, &moved).await;
    assert_eq!((r_decoy.status, r_decoy.code()), (r_real.status, r_real.code()), "{:?}", r_decoy.body);
    assert_eq!(r_decoy.code(), "assertion.wrong_challenge");
    // 3. The offered credential and its challenge: only the signature is wrong.
    let decoy = start("mallory").await;
    let cdj = String::from_utf8(moved.response.client_data_json.to_vec()).unwrap();
    let old = serde_json::from_str::<Value>(&cdj).unwrap()["challenge"].as_str().unwrap().to_owned();
    let mut resigned = moved.clone();
    resigned.response.client_data_json = cdj.replace(&old, &decoy_challenge(&decoy)).into_bytes();
    let r_decoy = finish(&decoy, &resigned).await;
    assert_eq!((r_decoy.status, r_decoy.code()), (401, "assertion.bad_signature"), "{:?}", r_decoy.body);
    let mut bad_sig = signed.clone(); // alice's key, the challenge changed: the signature no longer holds
    let real_again = start("alice").await;
    let cdj = String::from_utf8(bad_sig.response.client_data_json.to_vec()).unwrap();
    let old = serde_json::from_str::<Value>(&cdj).unwrap()["challenge"].as_str().unwrap().to_owned();
    bad_sig.response.client_data_json = cdj.replace(&old, &decoy_challenge(&real_again)).into_bytes();
    let r_real = finish(&real_again, &bad_sig).await;
    assert_eq!((r_real.status, r_real.code()), (401, "assertion.bad_signature"), "{:?}", r_real.body);
    // Each refused ceremony is in the audit chain (throttled per source and code).
    assert!(count(&gw, "ceremony.refused").await >= 2);
}

fn decoy_challenge(start: &Value) -> String {
    start["options"]["publicKey"]["challenge"].as_str().unwrap().to_owned()
}

/// #18.4: a flood of `login/start` from one source is cut off at its rate limit
/// (nothing stored beyond it), the registry is built once per change, and a freeze
/// by a logged-in approver completes during the flood.
pub async fn a_login_flood_does_not_stop_a_freeze(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 1).await;
    let carol = enroll(&gw, "carol", &["traders"], tokens.remove(0)).await;
    let before: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM ceremonies").fetch_one(gw.state.store.pool()).await.unwrap();
    let flood = {
        let gw_base = gw.base.clone();
        let http = gw.http.clone();
        tokio::spawn(async move {
            let mut limited = 0;
            let mut set = tokio::task::JoinSet::new();
            for i in 0..400 {
                let (http, url) = (http.clone(), format!("{gw_base}/v1/login/start"));
                set.spawn(async move {
                    let r = http
                        .post(url)
                        .json(&json!({"approver": format!("p{}", i % 50)}))
                        .send()
                        .await
                        .unwrap();
                    r.status().as_u16()
                });
            }
            while let Some(status) = set.join_next().await {
                if status.unwrap() == 429 {
                    limited += 1;
                }
            }
            limited
        })
    };
    let started = tokio::time::Instant::now();
    let r = post(&gw, "/v1/freeze/challenge", Some(&carol.session), json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let options: webauthn_rs::prelude::RequestChallengeResponse =
        serde_json::from_value(r.body["options"].clone()).unwrap();
    let credential = assert_standard(&carol.token, options.public_key).await;
    let done = post(
        &gw,
        "/v1/freeze",
        Some(&carol.session),
        json!({"ceremony": r.body["ceremony"], "credential": credential, "reason": "flood"}),
    )
    .await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    // The figure, for the run's log (not a timed assertion).
    #[allow(clippy::print_stdout)]
    {
        println!("freeze completed during a 400-request login flood in {} ms", started.elapsed().as_millis());
    }
    let limited = flood.await.unwrap();
    let per_source = i64::from(gw.state.config.ceremonies_per_minute_per_source);
    assert!(
        limited > 0 && 400 - limited <= per_source,
        "at most {per_source} a minute from one source: {limited} refused"
    );
    let after: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM ceremonies").fetch_one(gw.state.store.pool()).await.unwrap();
    assert!(after - before <= per_source + 1, "stored ceremonies bounded: {} new", after - before);
    assert!(gw.state.store.freeze_state().await.unwrap().frozen);

    // The registry: built once, then served from the cache until the chain moves.
    let first = gw.http.get(format!("{}/v1/registry", gw.base)).send().await.unwrap().text().await.unwrap();
    let second = gw.http.get(format!("{}/v1/registry", gw.base)).send().await.unwrap().text().await.unwrap();
    assert_eq!(first, second, "same head, same signed registry");
}

/// #18.14: the reason sent with a decision is signed (binding version 2): a reason
/// other than the one the key signed, or one sent with a version 1 binding (which
/// signs none), is refused and nothing is counted; the stored reason is verifiable
/// against the stored clientDataJSON.
pub async fn a_decisions_reason_is_signed(db: Db) {
    use countersign_core::binding::reason_hash;
    let (gw, mut tokens) = gateway_with_tokens(db, 2).await;
    let mut alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let _carol = enroll(&gw, "carol", &["traders"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let id = gw.withdraw(&key, &eth("5")).await.op_id();
    let path = format!("/v1/operations/{id}/decisions");
    let signing = |reason: &'static str| {
        move |s: String| {
            s.replacen("\"v\":1", "\"v\":2", 1).replacen(
                "\"decision\":\"reject\"}",
                &format!("\"decision\":\"reject\",\"reason\":\"{}\"}}", reason_hash(reason)),
                1,
            )
        }
    };
    let session = alice.session.clone();
    let send = |ceremony: Value, credential, reason: &'static str| {
        let (gw, path, session) = (&gw, path.clone(), session.clone());
        async move {
            post(
                gw,
                &path,
                Some(&session),
                json!({"ceremony": ceremony, "credential": credential, "reason": reason}),
            )
            .await
        }
    };
    let (c, cred) = sign_decision(&gw, &mut alice, &id, Decision::Reject, &same).await;
    let r = send(c, cred, "not our address").await;
    assert_eq!((r.status, r.code()), (400, "binding.reason_mismatch"), "v1 signs no reason: {:?}", r.body);
    let (c, cred) = sign_decision(&gw, &mut alice, &id, Decision::Reject, &signing("not our address")).await;
    let r = send(c, cred, "approved by phone").await;
    assert_eq!((r.status, r.code()), (400, "binding.reason_mismatch"), "{:?}", r.body);
    assert_eq!(count(&gw, "decision.counted").await, 0);

    let (c, cred) = sign_decision(&gw, &mut alice, &id, Decision::Reject, &signing("not our address")).await;
    let r = send(c, cred, "not our address").await;
    assert_eq!((r.status, r.body["state"].clone()), (200, json!("rejected")), "{:?}", r.body);
    let row = sqlx::query("SELECT reason, client_data_json FROM decisions WHERE operation_id = $1")
        .bind(&id)
        .fetch_one(gw.state.store.pool())
        .await
        .unwrap();
    use sqlx::Row;
    let reason: String = row.try_get(0).unwrap();
    let cdj: String = row.try_get(1).unwrap();
    let cdj = data_encoding::BASE64URL_NOPAD.decode(cdj.as_bytes()).unwrap();
    let member = countersign_core::ApprovalBinding::from_client_data_json(&cdj).unwrap();
    member.check_reason(Some(&reason)).unwrap();
    assert_eq!(reason, "not our address");
    // The audit chain shows it with the signature's verdict.
    let entries = gw.state.store.audit_events().await.unwrap();
    let counted = entries.iter().find(|e| e.event == "decision.counted").unwrap();
    assert_eq!(counted.details["reason"], "not our address");
    assert_eq!(counted.details["reason_signed"], true);
}

/// #18.14, the reader's side: the approvers' views carry every decision with what
/// its key signed, and the client checks each one itself. A reason changed in the
/// database after the touch shows as altered, not as what the person said.
pub async fn the_client_shows_each_decisions_reason_with_its_signatures_verdict(db: Db) {
    use countersign_core::certificate::DecisionCheck;
    let gw = Gateway::start_tls(db).await;
    let (alice_client, alice, alice_key) = approver(&gw, "alice").await;
    let (carol_client, carol, carol_key) = approver(&gw, "carol").await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let pending_id = gw.withdraw(&key, &eth("5")).await.op_id();
    let rejected_id = gw.withdraw(&key, &eth("6")).await.op_id();

    // An approval so far on one; a rejection with a reason on the other.
    let c = carol_client.challenge(&carol, &pending_id, Decision::Approve).await.unwrap();
    carol_client.sign_decision(&carol, c, None, carol_key, &ceremony()).await.unwrap();
    let c = alice_client.challenge(&alice, &rejected_id, Decision::Reject).await.unwrap();
    let r =
        alice_client.sign_decision(&alice, c, Some("not our address"), alice_key, &ceremony()).await.unwrap();
    assert_eq!(r["state"], "rejected");

    let pending = alice_client.pending(&alice).await.unwrap();
    let op = pending.iter().find(|o| o.operation.id.to_string() == pending_id).unwrap();
    assert_eq!(op.decisions.len(), 1, "{:?}", op.decisions);
    assert_eq!(
        (op.decisions[0].approver.as_str(), op.decisions[0].decision, &op.decisions[0].check),
        ("carol", Decision::Approve, &DecisionCheck::Signed)
    );
    async fn history(
        client: &countersign_client::Client,
        session: &countersign_client::Session,
        id: &str,
    ) -> Vec<countersign_client::CheckedDecision> {
        let ops = client.history(session).await.unwrap();
        ops.into_iter().find(|o| o.operation.id.to_string() == id).unwrap().decisions
    }
    let decisions = history(&alice_client, &alice, &rejected_id).await;
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].reason.as_deref(), Some("not our address"));
    assert_eq!(decisions[0].check, DecisionCheck::Signed);

    // The database says she wrote something else: the signature says otherwise.
    sqlx::query("UPDATE decisions SET reason = 'approved by phone' WHERE operation_id = $1")
        .bind(&rejected_id)
        .execute(gw.state.store.pool())
        .await
        .unwrap();
    let decisions = history(&alice_client, &alice, &rejected_id).await;
    assert_eq!(decisions[0].reason.as_deref(), Some("approved by phone"));
    assert_eq!(decisions[0].check, DecisionCheck::ReasonAltered);
    // And a decision flipped in the database no longer verifies at all.
    sqlx::query("UPDATE decisions SET decision = 'approve', reason = NULL WHERE operation_id = $1")
        .bind(&rejected_id)
        .execute(gw.state.store.pool())
        .await
        .unwrap();
    let decisions = history(&alice_client, &alice, &rejected_id).await;
    assert!(matches!(decisions[0].check, DecisionCheck::Invalid { .. }), "{:?}", decisions[0]);
}
