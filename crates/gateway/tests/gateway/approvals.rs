//! Approvals with hardware keys, end to end over HTTP: enrollment with attestation,
//! login, and decisions whose clientDataJSON carries the `countersign` member.
//! The authenticator is `countersign-softkey` driven through `countersign-keys`'s
//! CTAP2 layer, exactly as the desktop drives a USB key: PIN protocol 2, packed
//! attestation from the development CA, credProtect, ES256, a signature counter.

use std::collections::BTreeSet;

use countersign_core::binding::{ApprovalBinding, client_data_json};
use countersign_core::certificate::SignedRegistry;
use countersign_core::operation::Role;
use countersign_core::release::{Trust, verify_release};
use countersign_core::{Decision, canonical};
use countersign_softkey::SoftKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    AttestationCaList, CreationChallengeResponse, PublicKeyCredential, RequestChallengeResponse,
};
use webauthn_rs_proto::PublicKeyCredentialRequestOptions;

use crate::support::*;

const ORIGIN: &str = "https://localhost";

pub struct Approver {
    pub id: String,
    pub token: SoftKey,
    pub session: String,
}

/// Sign a standard `webauthn.get` (login, freeze) with the key.
pub async fn assert_standard(
    token: &SoftKey,
    options: PublicKeyCredentialRequestOptions,
) -> PublicKeyCredential {
    countersign_keys::sign_standard(token.clone(), &ceremony(), options, ORIGIN).await.unwrap()
}

/// Start a gateway that trusts the software keys' development CA, and make `n` keys.
pub async fn gateway_with_tokens(db: Db, n: usize) -> (Gateway, Vec<SoftKey>) {
    gateway_with_policy_and_tokens(db, policy(), n).await
}

/// [`gateway_with_tokens`] with a policy of the test's own.
pub async fn gateway_with_policy_and_tokens(
    db: Db,
    policy: countersign_core::policy::Policy,
    n: usize,
) -> (Gateway, Vec<SoftKey>) {
    let pem = countersign_softkey::dev_ca_pem().unwrap();
    let trust = AttestationCaList::try_from(pem.as_bytes()).unwrap();
    let tokens = soft_tokens(n);
    let gw = Gateway::start_full(db, policy, Some(trust)).await;
    (gw, tokens)
}

/// `n` software keys with the test PIN.
pub fn soft_tokens(n: usize) -> Vec<SoftKey> {
    (0..n)
        .map(|i| {
            let key = SoftKey::new(&format!("softkey {i}")).unwrap();
            key.set_pin(KEY_PIN).unwrap();
            key
        })
        .collect()
}

pub async fn post(gw: &Gateway, path: &str, bearer: Option<&str>, body: Value) -> Reply {
    let mut req = gw.http.post(format!("{}{path}", gw.base)).json(&body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    Reply::from(req.send().await.unwrap()).await
}

/// A bootstrap enrollment code (as the gateway host's CLI issues it), or its refusal.
async fn bootstrap_code(
    gw: &Gateway,
    id: &str,
    roles: &BTreeSet<Role>,
) -> countersign_gateway::error::Result<String> {
    countersign_gateway::approvers::issue_enrollment_code(
        &gw.state,
        &id.parse().unwrap(),
        id,
        roles,
        &BTreeSet::new(),
        None,
        gw.now(),
    )
    .await
}

/// Bootstrap a person on the host, enroll their token, log in.
pub async fn enroll(gw: &Gateway, id: &str, groups: &[&str], token: SoftKey) -> Approver {
    enroll_as(gw, id, &[Role::Approver], groups, None, token).await
}

/// Enroll a person's token with a code issued by the host (`issued_by` = None) or
/// proposed by an admin; log in when the key is active at once.
pub async fn enroll_as(
    gw: &Gateway,
    id: &str,
    roles: &[Role],
    groups: &[&str],
    issued_by: Option<&str>,
    token: SoftKey,
) -> Approver {
    let roles: BTreeSet<Role> = roles.iter().copied().collect();
    let groups = groups.iter().map(|g| g.parse().unwrap()).collect();
    let by: Option<countersign_core::id::ApproverId> = issued_by.map(|b| b.parse().unwrap());
    let code = countersign_gateway::approvers::issue_enrollment_code(
        &gw.state,
        &id.parse().unwrap(),
        id,
        &roles,
        &groups,
        by.as_ref(),
        gw.now(),
    )
    .await
    .unwrap();
    let r = post(gw, "/v1/enroll/start", None, json!({"code": code})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let options: CreationChallengeResponse = serde_json::from_value(r.body["options"].clone()).unwrap();
    let credential =
        countersign_keys::register(token.clone(), &ceremony(), options.public_key, ORIGIN).await.unwrap();
    let r = post(
        gw,
        "/v1/enroll/finish",
        None,
        json!({"ceremony": r.body["ceremony"], "label": "soft", "credential": credential}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut a = Approver { id: id.to_owned(), token, session: String::new() };
    if r.body["status"] == "active" {
        a.session = login(gw, &mut a).await.body["token"].as_str().unwrap().to_owned();
    } else {
        assert_eq!(r.body["status"], "pending_approval");
    }
    a
}

pub async fn login(gw: &Gateway, a: &mut Approver) -> Reply {
    let r = post(gw, "/v1/login/start", None, json!({"approver": a.id})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let options: RequestChallengeResponse = serde_json::from_value(r.body["options"].clone()).unwrap();
    let credential = assert_standard(&a.token, options.public_key).await;
    post(gw, "/v1/login/finish", None, json!({"ceremony": r.body["ceremony"], "credential": credential}))
        .await
}

/// What a desktop client does: ask for a challenge, recompute the digest from the
/// canonical operation it will display, sign clientDataJSON with the countersign
/// member, send the assertion. `tamper` may alter the clientDataJSON before signing.
pub async fn decide(
    gw: &Gateway,
    a: &mut Approver,
    op_id: &str,
    decision: Decision,
    tamper: &dyn Fn(String) -> String,
) -> Reply {
    let (ceremony, credential) = sign_decision(gw, a, op_id, decision, tamper).await;
    post(
        gw,
        &format!("/v1/operations/{op_id}/decisions"),
        Some(&a.session),
        json!({"ceremony": ceremony, "credential": credential}),
    )
    .await
}

pub async fn sign_decision(
    gw: &Gateway,
    a: &mut Approver,
    op_id: &str,
    decision: Decision,
    tamper: &dyn Fn(String) -> String,
) -> (Value, PublicKeyCredential) {
    let r = post(
        gw,
        &format!("/v1/operations/{op_id}/challenge"),
        Some(&a.session),
        json!({"decision": decision}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let options: RequestChallengeResponse = serde_json::from_value(r.body["options"].clone()).unwrap();
    let op = canonical::decode(r.body["operation"]["canonical"].as_str().unwrap().as_bytes()).unwrap();
    let binding = ApprovalBinding::new(&op, decision).unwrap();
    let challenge = data_encoding::BASE64URL_NOPAD.encode(&options.public_key.challenge);
    let cdj = tamper(String::from_utf8(client_data_json(&challenge, ORIGIN, &binding).unwrap()).unwrap())
        .into_bytes();
    let credential =
        countersign_keys::sign(a.token.clone(), &ceremony(), options.public_key, cdj).await.unwrap();
    (r.body["ceremony"].clone(), credential)
}

/// A person without an active key gets a login challenge like anyone's (a decoy:
/// login/start does not tell who exists), but it offers none of their keys' credentials.
async fn assert_login_offers_no_key_of(gw: &Gateway, who: &str, token: &SoftKey) {
    let r = post(gw, "/v1/login/start", None, json!({"approver": who})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let options: RequestChallengeResponse = serde_json::from_value(r.body["options"].clone()).unwrap();
    let err = countersign_keys::sign_standard(token.clone(), &ceremony(), options.public_key, ORIGIN)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "key.credential_not_found", "{err:?}");
}

pub fn same(s: String) -> String {
    s
}

pub async fn two_hardware_key_approvals_release_a_large_withdrawal(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 4).await;
    let mut alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let mut carol = enroll(&gw, "carol", &["traders"], tokens.remove(0)).await;
    let mut dave = enroll(&gw, "dave", &["traders"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await; // owned by bob
    let held = gw.withdraw(&key, &eth("5")).await; // $15,000: two traders
    assert_eq!(held.state(), "pending");
    let id = held.op_id();

    // Approvers see it.
    let r = gw
        .http
        .get(format!("{}/v1/approver/operations", gw.base))
        .bearer_auth(&alice.session)
        .send()
        .await
        .unwrap();
    let listed: Value = r.json().await.unwrap();
    assert_eq!(listed["operations"][0]["operation"]["id"], id);

    let r = decide(&gw, &mut alice, &id, Decision::Approve, &same).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "pending");
    assert_eq!(r.body["tally"]["progress"][0]["approved"], 1);

    // The same person again (a second ceremony) does not count twice.
    let r = decide(&gw, &mut alice, &id, Decision::Approve, &same).await;
    assert_eq!((r.status, r.code()), (409, "decision.already_decided"));
    // Nor with a second key of hers: people count, not keys.
    let mut alice_second_key = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let r = decide(&gw, &mut alice_second_key, &id, Decision::Approve, &same).await;
    assert_eq!((r.status, r.code()), (409, "decision.already_decided"));

    let r = decide(&gw, &mut carol, &id, Decision::Approve, &same).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "released");

    // Released once, with a quorum release document settlement verifies offline.
    let ledger = gw.state.store.ledger().await.unwrap();
    let entry = ledger.iter().find(|l| l.operation_id == id).unwrap();
    let registry: SignedRegistry =
        gw.http.get(format!("{}/v1/registry", gw.base)).send().await.unwrap().json().await.unwrap();
    let trusted = gw.state.keys.verifying_key();
    let registry = registry.verify(&trusted).unwrap().clone();
    let p = policy();
    let trust = Trust { gateway: &trusted, policy: &p, registry: &registry };
    let op = verify_release(&serde_json::to_vec(&entry.certificate).unwrap(), &trust).unwrap();
    assert_eq!(op.id.as_str(), id);
    assert_eq!(entry.certificate["approvals"].as_array().unwrap().len(), 2);

    // A third approval after release is refused.
    let r = post(
        &gw,
        &format!("/v1/operations/{id}/challenge"),
        Some(&dave.session),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (409, "decision.not_pending"));
    let _ = &mut dave;
    let events = gw.audit_events().await;
    for e in [
        "credential.enrolled",
        "approver.login",
        "decision.challenge",
        "decision.counted",
        "operation.released",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} missing from {events:?}");
    }
}

pub async fn approvals_bound_to_something_else_are_refused(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 2).await;
    let mut alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let mut bob = enroll(&gw, "bob", &["traders"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await; // owned by bob
    let id = gw.withdraw(&key, &eth("5")).await.op_id();
    let other = gw.withdraw(&key, &eth("6")).await.op_id();
    let count = || async { gw.audit_events().await.iter().filter(|e| *e == "decision.counted").count() };

    // The man in the middle changed the amount the approver saw: digest mismatch.
    let r = decide(&gw, &mut alice, &id, Decision::Approve, &|s| {
        let v: Value = serde_json::from_str(&s).unwrap();
        s.replace(v["countersign"]["digest"].as_str().unwrap(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    })
    .await;
    assert_eq!((r.status, r.code()), (400, "binding.digest_mismatch"));
    // Signed "reject" but presented as the approve ceremony.
    let r = decide(&gw, &mut alice, &id, Decision::Approve, &|s| {
        s.replace("\"decision\":\"approve\"", "\"decision\":\"reject\"")
    })
    .await;
    assert_eq!(r.code(), "binding.decision_mismatch");
    // Signed for another operation.
    let r = decide(&gw, &mut alice, &id, Decision::Approve, &|s| s.replace(&id, &other)).await;
    assert_eq!(r.code(), "binding.operation_mismatch");
    // No countersign member at all (a plain WebAuthn assertion).
    let r = decide(&gw, &mut alice, &id, Decision::Approve, &|s| {
        let mut v: Value = serde_json::from_str(&s).unwrap();
        v.as_object_mut().unwrap().remove("countersign");
        v.to_string()
    })
    .await;
    assert_eq!(r.code(), "binding.missing");
    // Wrong origin: webauthn-rs refuses it.
    let r =
        decide(&gw, &mut alice, &id, Decision::Approve, &|s| s.replace(ORIGIN, "https://evil.example")).await;
    assert_eq!(r.code(), "assertion.wrong_origin");
    // Wrong ceremony type.
    let r =
        decide(&gw, &mut alice, &id, Decision::Approve, &|s| s.replace("webauthn.get", "webauthn.create"))
            .await;
    assert_eq!(r.code(), "assertion.wrong_type");
    // An assertion whose rpIdHash names another relying party (a real key will not
    // even find the credential for another RP id, so the hash is replaced after
    // signing, as a forging client would).
    let c = post(
        &gw,
        &format!("/v1/operations/{id}/challenge"),
        Some(&alice.session),
        json!({"decision": "approve"}),
    )
    .await;
    let options: RequestChallengeResponse = serde_json::from_value(c.body["options"].clone()).unwrap();
    let op = canonical::decode(c.body["operation"]["canonical"].as_str().unwrap().as_bytes()).unwrap();
    let binding = ApprovalBinding::new(&op, Decision::Approve).unwrap();
    let cdj = client_data_json(
        &data_encoding::BASE64URL_NOPAD.encode(&options.public_key.challenge),
        ORIGIN,
        &binding,
    )
    .unwrap();
    let mut credential =
        countersign_keys::sign(alice.token.clone(), &ceremony(), options.public_key, cdj).await.unwrap();
    credential.response.authenticator_data[..32].copy_from_slice(&Sha256::digest(b"evil.example"));
    let r = post(
        &gw,
        &format!("/v1/operations/{id}/decisions"),
        Some(&alice.session),
        json!({"ceremony": c.body["ceremony"], "credential": credential}),
    )
    .await;
    assert_eq!(r.code(), "assertion.wrong_rp");
    // The UP or UV flag clear (a key that did not see a touch, or took no PIN): the
    // relying party checks the flags before the signature, so clearing the bit in a
    // signed response exercises exactly that check.
    for (bit, code) in [(0x01u8, "assertion.no_user_presence"), (0x04, "assertion.no_user_verification")] {
        let (ceremony, mut credential) = sign_decision(&gw, &mut alice, &id, Decision::Approve, &same).await;
        credential.response.authenticator_data[32] &= !bit;
        let r = post(
            &gw,
            &format!("/v1/operations/{id}/decisions"),
            Some(&alice.session),
            json!({"ceremony": ceremony, "credential": credential}),
        )
        .await;
        assert_eq!((r.status, r.code()), (401, code), "{:?}", r.body);
    }
    // A signature that does not verify.
    let (ceremony, mut credential) = sign_decision(&gw, &mut alice, &id, Decision::Approve, &same).await;
    let last = credential.response.signature.len() - 3;
    credential.response.signature[last] ^= 1;
    let r = post(
        &gw,
        &format!("/v1/operations/{id}/decisions"),
        Some(&alice.session),
        json!({"ceremony": ceremony, "credential": credential}),
    )
    .await;
    assert_eq!(r.code(), "assertion.bad_signature", "{:?}", r.body);
    // A challenge replayed: the ceremony is single use.
    let (ceremony, credential) = sign_decision(&gw, &mut alice, &id, Decision::Approve, &same).await;
    let body = json!({"ceremony": ceremony, "credential": credential});
    let path = format!("/v1/operations/{id}/decisions");
    assert_eq!(post(&gw, &path, Some(&alice.session), body.clone()).await.status, 200);
    let r = post(&gw, &path, Some(&alice.session), body).await;
    assert_eq!((r.status, r.code()), (401, "ceremony.unknown"));
    // A challenge for one operation used for another.
    let (ceremony, credential) = sign_decision(&gw, &mut alice, &other, Decision::Approve, &same).await;
    let r =
        post(&gw, &path, Some(&alice.session), json!({"ceremony": ceremony, "credential": credential})).await;
    assert_eq!(r.code(), "ceremony.wrong_scope");
    // The API key's owner cannot decide on its withdrawals.
    let r = post(
        &gw,
        &path.replace("/decisions", "/challenge"),
        Some(&bob.session),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (403, "decision.initiator"));
    let _ = &mut bob;
    // No session, or a made-up one.
    assert_eq!(post(&gw, &path, None, json!({})).await.code(), "session.missing");
    assert_eq!(post(&gw, &path, Some("forged"), json!({})).await.code(), "session.invalid");
    // Only the one valid decision counted.
    assert_eq!(count().await, 1);
    // Every signature over something else was audited: digest, decision, operation, missing member.
    let refused = gw.audit_events().await.iter().filter(|e| *e == "decision.binding_refused").count();
    assert_eq!(refused, 4);
}

pub async fn one_rejection_vetoes_and_enrollment_codes_are_single_use(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 2).await;
    let mut alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let id = gw.withdraw(&key, &eth("5")).await.op_id();
    let r = decide(&gw, &mut alice, &id, Decision::Reject, &same).await;
    assert_eq!(r.body["state"], "rejected", "{:?}", r.body);
    assert!(gw.state.store.ledger().await.unwrap().is_empty());

    // An expired operation cannot be decided, and sessions expire after 15 minutes.
    let late = gw.withdraw(&key, &eth("5")).await.op_id();
    gw.clock.advance(3600);
    let r = post(
        &gw,
        &format!("/v1/operations/{late}/challenge"),
        Some(&alice.session),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "session.invalid"));
    alice.session = login(&gw, &mut alice).await.body["token"].as_str().unwrap().to_owned();
    let r = post(
        &gw,
        &format!("/v1/operations/{late}/challenge"),
        Some(&alice.session),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (409, "decision.expired"));

    // Enrollment codes: unknown, used, expired.
    let r = post(&gw, "/v1/enroll/start", None, json!({"code": "NOTACODE"})).await;
    assert_eq!((r.status, r.code()), (401, "enroll.unknown_code"));
    let roles: BTreeSet<Role> = [Role::Approver].into();
    let code = bootstrap_code(&gw, "erin", &roles).await.unwrap();
    gw.clock.advance(901);
    let r = post(&gw, "/v1/enroll/start", None, json!({"code": code})).await;
    assert_eq!(r.code(), "enroll.expired_code");
    let _ = tokens;
}

/// After the first admins, a new person's key counts only once other admins approve
/// the ApproverEnroll operation with their keys; unfreezing works the same way.
pub async fn new_keys_and_unfreezing_need_the_admin_quorum(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 6).await;
    let admin = [Role::Admin, Role::Approver];
    let mut alice = enroll_as(&gw, "alice", &admin, &["admins", "traders"], None, tokens.remove(0)).await;
    let mut dave = enroll_as(&gw, "dave", &admin, &["admins", "traders"], None, tokens.remove(0)).await;
    let mut erin = enroll_as(&gw, "erin", &admin, &["admins", "traders"], None, tokens.remove(0)).await;
    // Three admins can approve what one of them proposes (quorum 2): bootstrap closes.
    let roles: BTreeSet<Role> = admin.into_iter().collect();
    let closed = bootstrap_code(&gw, "mallory", &roles).await;
    assert_eq!(closed.unwrap_err().code, "approver.bootstrap_closed");

    // alice invites carol; carol's key is enrolled but does not count yet.
    let mut carol =
        enroll_as(&gw, "carol", &[Role::Approver], &["traders"], Some("alice"), tokens.remove(0)).await;
    assert_login_offers_no_key_of(&gw, "carol", &carol.token).await;
    let pending = countersign_gateway::approvers::pending(&gw.state, 10).await.unwrap();
    let enroll_op = pending.iter().find(|p| p.operation.kind().as_str() == "approver_enroll").unwrap();
    let enroll_id = enroll_op.operation.id.as_str().to_owned();
    assert_eq!(enroll_op.operation.initiator.responsible_person().as_str(), "alice");

    // alice proposed it, so she cannot approve; a trader-only approver may not decide admin operations.
    let r = post(
        &gw,
        &format!("/v1/operations/{enroll_id}/challenge"),
        Some(&alice.session),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.code(), "decision.initiator");
    let r = decide(&gw, &mut dave, &enroll_id, Decision::Approve, &same).await;
    assert_eq!(r.body["state"], "pending", "{:?}", r.body);
    let r = decide(&gw, &mut erin, &enroll_id, Decision::Approve, &same).await;
    assert_eq!(r.body["state"], "released", "{:?}", r.body);
    // Now carol's key counts.
    let r = login(&gw, &mut carol).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    carol.session = r.body["token"].as_str().unwrap().to_owned();

    // Only active admins propose enrollments; nobody approves an enrollment about themselves.
    let trader: BTreeSet<Role> = [Role::Approver].into();
    let by_carol = countersign_gateway::approvers::issue_enrollment_code(
        &gw.state,
        &"zed".parse().unwrap(),
        "Zed",
        &trader,
        &BTreeSet::new(),
        Some(&"carol".parse().unwrap()),
        gw.now(),
    )
    .await;
    assert_eq!(by_carol.unwrap_err().code, "approver.not_an_admin");
    let _second_key =
        enroll_as(&gw, "dave", &admin, &["admins", "traders"], Some("alice"), tokens.remove(0)).await;
    let pending = countersign_gateway::approvers::pending(&gw.state, 10).await.unwrap();
    let about_dave = pending
        .iter()
        .find(|p| p.operation.kind().as_str() == "approver_enroll")
        .unwrap()
        .operation
        .id
        .as_str()
        .to_owned();
    // dave approves the further key as his consent (the authority chain needs it):
    // it never counts towards the quorum, even though he is an admin.
    let r = decide(&gw, &mut dave, &about_dave, Decision::Approve, &same).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "pending", "{:?}", r.body);
    assert_eq!(r.body["tally"]["progress"][0]["approved"], 0, "{:?}", r.body);

    // Unfreeze: frozen keys stay frozen until two admins approve.
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    assert!(gw.state.store.freeze("approver:carol", "suspicious", gw.now()).await.unwrap());
    let unfreeze = countersign_gateway::approvers::propose_unfreeze(
        &gw.state,
        &"alice".parse().unwrap(),
        "rotated",
        gw.now(),
    )
    .await
    .unwrap();
    let uid = unfreeze.operation.id.as_str().to_owned();
    let r = post(
        &gw,
        &format!("/v1/operations/{uid}/challenge"),
        Some(&carol.session),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.code(), "decision.wrong_role");
    decide(&gw, &mut dave, &uid, Decision::Approve, &same).await;
    assert_eq!(gw.withdraw(&key, &eth("1")).await.code(), "auth.frozen");
    let r = decide(&gw, &mut erin, &uid, Decision::Approve, &same).await;
    assert_eq!(r.body["state"], "released", "{:?}", r.body);
    assert!(!gw.state.store.freeze_state().await.unwrap().frozen);
    assert_eq!(gw.withdraw(&key, &eth("1")).await.state(), "released");
    // Nothing to lift now.
    let r = countersign_gateway::approvers::propose_unfreeze(
        &gw.state,
        &"alice".parse().unwrap(),
        "again",
        gw.now(),
    )
    .await;
    assert_eq!(r.unwrap_err().code, "unfreeze.not_frozen");
    // An approval to lift one freeze never lifts a later one.
    gw.clock.advance(10);
    assert!(gw.state.store.freeze("approver:carol", "first", gw.now()).await.unwrap());
    let old = countersign_gateway::approvers::propose_unfreeze(
        &gw.state,
        &"alice".parse().unwrap(),
        "first over",
        gw.now(),
    )
    .await
    .unwrap();
    let old_id = old.operation.id.as_str().to_owned();
    let lift = countersign_gateway::approvers::propose_unfreeze(
        &gw.state,
        &"alice".parse().unwrap(),
        "lift",
        gw.now(),
    )
    .await
    .unwrap();
    let lift_id = lift.operation.id.as_str().to_owned();
    decide(&gw, &mut dave, &lift_id, Decision::Approve, &same).await;
    decide(&gw, &mut erin, &lift_id, Decision::Approve, &same).await;
    gw.clock.advance(10);
    assert!(gw.state.store.freeze("approver:carol", "second", gw.now()).await.unwrap());
    decide(&gw, &mut dave, &old_id, Decision::Approve, &same).await;
    let r = decide(&gw, &mut erin, &old_id, Decision::Approve, &same).await;
    assert_eq!(r.body["state"], "released");
    assert!(gw.state.store.freeze_state().await.unwrap().frozen, "the second freeze stands");
    let events = gw.audit_events().await;
    assert!(events.contains(&"unfreeze.stale".to_string()) && events.contains(&"freeze.off".to_string()));
    let _ = &mut alice;
}

/// A cloned key (same secret, same counter) is caught by its counter, flagged, and
/// audited; revoking a person withdraws their approvals from pending operations.
pub async fn cloned_keys_are_flagged_and_revocation_is_immediate(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 3).await;
    let mut alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let mut carol = enroll(&gw, "carol", &["traders"], tokens.remove(0)).await;
    let mut dave = enroll(&gw, "dave", &["traders"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let first = gw.withdraw(&key, &eth("5")).await.op_id();
    let second = gw.withdraw(&key, &eth("6")).await.op_id();

    // An attacker copied alice's key: same private key, same counter.
    let clone = alice.token.clone_device().unwrap();
    let mut thief = Approver { id: "alice".into(), token: clone, session: alice.session.clone() };
    assert_eq!(decide(&gw, &mut alice, &first, Decision::Approve, &same).await.status, 200);
    let r = decide(&gw, &mut thief, &second, Decision::Approve, &same).await;
    assert_eq!((r.status, r.code()), (403, "decision.counter_regressed"), "{:?}", r.body);
    let events = gw.audit_events().await;
    assert!(events.contains(&"credential.counter_anomaly".to_string()));
    // The flagged key no longer counts, and the session it opened has ended.
    let r = post(
        &gw,
        &format!("/v1/operations/{second}/challenge"),
        Some(&alice.session),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "session.invalid"));
    assert_login_offers_no_key_of(&gw, "alice", &alice.token).await;
    // alice's earlier approval of the first operation was made with the flagged key:
    // it no longer counts, so carol's approval alone does not release it.
    let r = decide(&gw, &mut carol, &first, Decision::Approve, &same).await;
    assert_eq!(r.body["state"], "pending", "{:?}", r.body);
    assert_eq!(r.body["tally"]["progress"][0]["approved"], 1);

    // carol approves the second; then carol is revoked: her approval stops counting
    // and dave's alone does not release it.
    assert_eq!(decide(&gw, &mut carol, &second, Decision::Approve, &same).await.status, 200);
    assert!(
        countersign_gateway::approvers::revoke(&gw.state, &"carol".parse().unwrap(), "host", gw.now())
            .await
            .unwrap()
    );
    let r = decide(&gw, &mut dave, &second, Decision::Approve, &same).await;
    assert_eq!(r.body["state"], "pending", "{:?}", r.body);
    // Her session ended with the revocation.
    let r = post(
        &gw,
        &format!("/v1/operations/{second}/challenge"),
        Some(&carol.session),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.code(), "session.invalid");
    assert!(gw.state.store.ledger().await.unwrap().is_empty());
}

/// Read server-sent events until `want` events arrived (or 5 s passed).
async fn read_events(resp: &mut reqwest::Response, want: usize) -> Vec<(String, String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while out.len() < want {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("events arrive within 5 s")
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field =
                |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned());
            if let (Some(id), Some(event), Some(data)) = (field("id:"), field("event:"), field("data:")) {
                out.push((id, event, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    out
}

/// Approvers are told at once, and a reconnect with Last-Event-ID misses nothing.
pub async fn approvers_get_live_events_and_resume(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 3).await;
    let alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let mut carol = enroll(&gw, "carol", &["traders"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let url = format!("{}/v1/events", gw.base);
    assert_eq!(gw.http.get(&url).send().await.unwrap().status(), 401);

    let mut live = gw.http.get(&url).bearer_auth(&alice.session).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let first = gw.withdraw(&key, &eth("5")).await.op_id();
    let got = read_events(&mut live, 1).await;
    assert_eq!(
        (got[0].1.as_str(), got[0].2["operation"].as_str()),
        ("operation.pending", Some(first.as_str()))
    );
    let last_id = got[0].0.clone();
    drop(live);

    // While alice is away: a new operation and a decision on the first.
    let second = gw.withdraw(&key, &eth("6")).await.op_id();
    assert_eq!(decide(&gw, &mut carol, &first, Decision::Approve, &same).await.status, 200);
    let mut resumed =
        gw.http.get(&url).bearer_auth(&alice.session).header("Last-Event-ID", &last_id).send().await.unwrap();
    let got = read_events(&mut resumed, 2).await;
    let seen: Vec<(&str, &str)> =
        got.iter().map(|(_, e, d)| (e.as_str(), d["operation"].as_str().unwrap())).collect();
    assert_eq!(seen, vec![("operation.pending", second.as_str()), ("decision.counted", first.as_str())]);
    assert!(got[0].0.parse::<u64>().unwrap() > last_id.parse::<u64>().unwrap());

    // An approver sees only what their groups may act on: rita (risk only) is not
    // shown the traders' withdrawal, but everyone sees the freeze.
    let rita = enroll(&gw, "rita", &["risk"], tokens.remove(0)).await;
    let mut risk_stream = gw.http.get(&url).bearer_auth(&rita.session).send().await.unwrap();
    let third = gw.withdraw(&key, &eth("7")).await.op_id();
    gw.state.store.freeze("host", "drill", gw.now()).await.unwrap();
    let got = read_events(&mut risk_stream, 1).await;
    assert_eq!(got[0].1, "freeze.on", "rita must not see {third}: {got:?}");

    // One person holds at most 8 streams; the ninth is a clear refusal, and others
    // are not affected.
    let mut open = Vec::new();
    for _ in 0..countersign_gateway::events::STREAMS_PER_PERSON {
        let r = gw.http.get(&url).bearer_auth(&carol.session).send().await.unwrap();
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let refused = Reply::from(gw.http.get(&url).bearer_auth(&carol.session).send().await.unwrap()).await;
    assert_eq!((refused.status, refused.code()), (429, "events.too_many_streams_for_person"), "{refused:?}");
    assert_eq!(gw.http.get(&url).bearer_auth(&alice.session).send().await.unwrap().status(), 200);
}

/// Live events come from one reader per instance: every stream gets each event,
/// also what another instance on the same database commits, and a stream ends
/// once its person is revoked.
pub async fn live_events_reach_every_stream_and_follow_other_instances(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 2).await;
    let alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let carol = enroll(&gw, "carol", &["traders"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let url = format!("{}/v1/events", gw.base);
    let mut streams = Vec::new();
    for session in [&alice.session, &alice.session, &carol.session] {
        let r = gw.http.get(&url).bearer_auth(session).send().await.unwrap();
        assert_eq!(r.status(), 200);
        streams.push(r);
    }
    let op = gw.withdraw(&key, &eth("5")).await.op_id();
    for s in &mut streams {
        let got = read_events(s, 1).await;
        assert_eq!(
            (got[0].1.as_str(), got[0].2["operation"].as_str()),
            ("operation.pending", Some(op.as_str()))
        );
    }

    // Revoked: alice's streams end at once (the revocation makes every stream check
    // its session); carol's goes on.
    let alice_id = "alice".parse().unwrap();
    assert!(countersign_gateway::approvers::revoke(&gw.state, &alice_id, "host", gw.now()).await.unwrap());
    for s in &mut streams[..2] {
        let ended = tokio::time::timeout(std::time::Duration::from_millis(900), async {
            while s.chunk().await.unwrap().is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "a revoked person's stream must end");
    }
    let second = gw.withdraw(&key, &eth("6")).await.op_id();
    let got = read_events(&mut streams[2], 1).await;
    assert_eq!(got[0].2["operation"].as_str(), Some(second.as_str()));

    // A second instance commits: no local commit wakes this one, its reader finds it.
    let other = countersign_gateway::AppState::open(
        (*gw.state.config).clone(),
        std::sync::Arc::new(gw.clock.clone()),
    )
    .await
    .unwrap();
    other.store.freeze("host", "drill on the other instance", gw.now()).await.unwrap();
    assert_eq!(read_events(&mut streams[2], 1).await[0].1, "freeze.on");
}

/// Break glass: one approver's key touch freezes every API key at once.
pub async fn any_approver_freezes_all_keys_with_a_touch(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 1).await;
    let carol = enroll(&gw, "carol", &["traders"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    assert_eq!(gw.withdraw(&key, &eth("1")).await.state(), "released");
    let r = post(&gw, "/v1/freeze/challenge", Some(&carol.session), json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let options: RequestChallengeResponse = serde_json::from_value(r.body["options"].clone()).unwrap();
    let credential = assert_standard(&carol.token, options.public_key).await;
    // Without a valid assertion nothing happens.
    let mut forged = credential.clone();
    forged.response.signature[8] ^= 1;
    let r = post(
        &gw,
        "/v1/freeze",
        Some(&carol.session),
        json!({"ceremony": r.body["ceremony"], "credential": forged, "reason": "x"}),
    )
    .await;
    assert_eq!(r.code(), "assertion.bad_signature");
    assert!(!gw.state.store.freeze_state().await.unwrap().frozen);
    // A fresh challenge and a real touch.
    let r = post(&gw, "/v1/freeze/challenge", Some(&carol.session), json!({})).await;
    let options: RequestChallengeResponse = serde_json::from_value(r.body["options"].clone()).unwrap();
    let credential = assert_standard(&carol.token, options.public_key).await;
    let r = post(
        &gw,
        "/v1/freeze",
        Some(&carol.session),
        json!({"ceremony": r.body["ceremony"], "credential": credential, "reason": "odd withdrawals"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(gw.withdraw(&key, &eth("1")).await.code(), "auth.frozen");
    let entry =
        gw.state.store.audit_events().await.unwrap().into_iter().find(|e| e.event == "freeze.on").unwrap();
    assert_eq!(entry.actor, "approver:carol");
}

/// With no attestation CA trusted, nobody can enroll (fail closed).
pub async fn enrollment_is_refused_without_attestation_trust(db: Db) {
    let gw = Gateway::start(db).await;
    let roles: BTreeSet<Role> = [Role::Approver].into();
    let code = bootstrap_code(&gw, "alice", &roles).await.unwrap();
    let r = post(&gw, "/v1/enroll/start", None, json!({"code": code})).await;
    assert_eq!((r.status, r.code()), (503, "enroll.not_configured"));
    let r = post(&gw, "/v1/enroll/start", None, json!({"code": 7})).await;
    assert_eq!((r.status, r.code()), (400, "request.invalid_body"));
}

/// Bootstrap codes issued in a burst count before they are used: the host cannot
/// seed more people than the admin quorum needs by issuing codes faster than
/// people enroll.
pub async fn bootstrap_codes_cannot_be_issued_in_a_burst(db: Db) {
    let gw = Gateway::start(db).await;
    let roles: BTreeSet<Role> = [Role::Admin, Role::Approver].into();
    for id in ["a1", "a2", "a3"] {
        bootstrap_code(&gw, id, &roles).await.unwrap();
    }
    // The admin quorum needs 2; with 3 outstanding codes the 4th is refused.
    assert_eq!(bootstrap_code(&gw, "a4", &roles).await.unwrap_err().code, "approver.bootstrap_closed");
    // Expired codes no longer count.
    gw.clock.advance(901);
    bootstrap_code(&gw, "a4", &roles).await.unwrap();
}

/// Admins change the allowlist and the policy, and revoke a person, only through
/// operations the admin quorum approves; each takes effect when released.
pub async fn admin_changes_take_effect_only_after_the_admin_quorum(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 4).await;
    let admin = [Role::Admin, Role::Approver];
    let carol = enroll(&gw, "carol", &["traders"], tokens.remove(3)).await; // before bootstrap closes
    let alice = enroll_as(&gw, "alice", &admin, &["admins", "traders"], None, tokens.remove(0)).await;
    let mut dave = enroll_as(&gw, "dave", &admin, &["admins", "traders"], None, tokens.remove(0)).await;
    let mut erin = enroll_as(&gw, "erin", &admin, &["admins", "traders"], None, tokens.remove(0)).await;
    let propose = |session: String, action: Value| {
        let gw = &gw;
        async move { post(gw, "/v1/admin/operations", Some(&session), json!({"action": action})).await }
    };

    // Allowlist: pending until approved, then the destination is listed.
    let dest = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    let add = json!({"kind": "allowlist_add", "details": {"account": "acct_main", "network": "ethereum", "destination": {"address": dest}, "label": "cold wallet 2"}});
    let r = propose(carol.session.clone(), add.clone()).await;
    assert_eq!((r.status, r.code()), (403, "admin.not_an_admin"));
    let r = propose(alice.session.clone(), add).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let status = |gw: &Gateway| {
        let state = gw.state.clone();
        async move {
            let mut conn = state.store.pool().acquire().await.unwrap();
            state
                .store
                .allowlist_status(
                    &mut conn,
                    &"acct_main".parse().unwrap(),
                    &"ethereum".parse().unwrap(),
                    &countersign_core::operation::Destination { address: dest.into(), memo: None },
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(status(&gw).await, countersign_core::policy::DestinationStatus::NotAllowlisted);
    let r = approve_both(&gw, &mut dave, &mut erin, r.op_id()).await;
    assert_eq!(r.body["state"], "released", "{:?}", r.body);
    assert!(matches!(status(&gw).await, countersign_core::policy::DestinationStatus::Allowlisted { .. }));

    // Policy: version 2 must be the next version; it becomes current when released.
    let mut p2 = policy();
    p2.version = 3;
    let r = propose(alice.session.clone(), json!({"kind": "policy_update", "details": {"policy": p2}})).await;
    assert_eq!((r.status, r.code()), (409, "policy.wrong_version"));
    p2.version = 2;
    p2.approval_ttl_seconds = 1800;
    let r = propose(alice.session.clone(), json!({"kind": "policy_update", "details": {"policy": p2}})).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(gw.state.store.current_policy().await.unwrap().unwrap().version, 1);
    approve_both(&gw, &mut dave, &mut erin, r.op_id()).await;
    assert_eq!(gw.state.store.current_policy().await.unwrap().unwrap().version, 2);
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let held = gw.withdraw(&key, &eth("5")).await;
    assert_eq!(held.body["operation"]["policy_version"], 2);
    assert_eq!(held.body["operation"]["expires_at"], gw.now().plus_seconds(1800).to_string());

    // Revocation: one admin's key applies it at once (it only removes power); carol's
    // key stops counting and her session ends.
    let r = propose(
        alice.session.clone(),
        json!({"kind": "approver_revoke", "details": {"approver": "carol", "reason": "left the desk"}}),
    )
    .await;
    let revocation = r.op_id();
    let r = decide(&gw, &mut dave, &revocation, Decision::Approve, &same).await;
    assert_eq!(r.body["state"], "released", "{:?}", r.body);
    let r = post(
        &gw,
        &format!("/v1/operations/{revocation}/challenge"),
        Some(&erin.session),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.code(), "decision.not_pending");
    let r = post(
        &gw,
        &format!("/v1/operations/{}/challenge", held.op_id()),
        Some(&carol.session),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.code(), "session.invalid");
    // Withdrawals and enrollments are not proposed this way.
    let r = propose(
        alice.session.clone(),
        json!({"kind": "unfreeze", "details": {"freeze_started": "2026-11-28T12:00:00Z", "reason": "x"}}),
    )
    .await;
    assert_eq!(r.code(), "unfreeze.not_frozen");
}

async fn approve_both(gw: &Gateway, a: &mut Approver, b: &mut Approver, id: String) -> Reply {
    decide(gw, a, &id, Decision::Approve, &same).await;
    decide(gw, b, &id, Decision::Approve, &same).await
}

/// The relying-party checks of WebAuthn L3 §7.2 and of the `countersign` member that
/// `approvals_bound_to_something_else_are_refused` does not already cover, each
/// through the real HTTP path with its own code; nothing is counted.
pub async fn every_relying_party_check_has_its_code(db: Db) {
    let (gw, mut tokens) = gateway_with_tokens(db, 2).await;
    let mut alice = enroll(&gw, "alice", &["traders"], tokens.remove(0)).await;
    let _carol = enroll(&gw, "carol", &["traders"], tokens.remove(0)).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let id = gw.withdraw(&key, &eth("5")).await.op_id();
    let path = format!("/v1/operations/{id}/decisions");
    let session = alice.session.clone();
    let send = |ceremony: Value, credential: PublicKeyCredential| {
        post(&gw, &path, Some(&session), json!({"ceremony": ceremony, "credential": credential}))
    };

    // §7.2 step 12: the signed challenge is not this ceremony's.
    let r = decide(&gw, &mut alice, &id, Decision::Approve, &|s| {
        let v: Value = serde_json::from_str(&s).unwrap();
        let challenge = v["challenge"].as_str().unwrap();
        // Another valid base64url challenge: only the first 6 bits differ.
        let first = if challenge.starts_with('A') { "B" } else { "A" };
        let other = format!("{first}{}", &challenge[1..]);
        s.replace(challenge, &other)
    })
    .await;
    assert_eq!((r.status, r.code()), (401, "assertion.wrong_challenge"), "{:?}", r.body);

    // §7.2 step 5: a credential the ceremony did not allow (carol's key id on
    // alice's response).
    let carol_key: String = sqlx::query_scalar("SELECT id FROM credentials WHERE approver_id = 'carol'")
        .fetch_one(gw.state.store.pool())
        .await
        .unwrap();
    let carol_raw = data_encoding::BASE64URL_NOPAD.decode(carol_key.as_bytes()).unwrap();
    let (ceremony, mut credential) = sign_decision(&gw, &mut alice, &id, Decision::Approve, &same).await;
    credential.id = carol_key.clone();
    credential.raw_id = carol_raw;
    let r = send(ceremony, credential).await;
    assert_eq!((r.status, r.code()), (401, "assertion.unknown_credential"), "{:?}", r.body);

    // The countersign member: an unknown version, a second member, an extra field.
    let r = decide(&gw, &mut alice, &id, Decision::Approve, &|s| s.replacen("\"v\":1", "\"v\":2", 1)).await;
    assert_eq!((r.status, r.code()), (400, "binding.unsupported_version"), "{:?}", r.body);
    let r = decide(&gw, &mut alice, &id, Decision::Approve, &|s| {
        let v: Value = serde_json::from_str(&s).unwrap();
        let member = v["countersign"].to_string();
        s.replacen("\"countersign\":", &format!("\"countersign\":{member},\"countersign\":"), 1)
    })
    .await;
    assert_eq!((r.status, r.code()), (400, "canonical.duplicate_key"), "{:?}", r.body);
    let r = decide(&gw, &mut alice, &id, Decision::Approve, &|s| {
        s.replacen("\"v\":1", "\"v\":1,\"amount\":\"1\"", 1)
    })
    .await;
    assert_eq!((r.status, r.code()), (400, "binding.missing"), "{:?}", r.body);

    // A challenge answered after its time is up.
    let (ceremony, credential) = sign_decision(&gw, &mut alice, &id, Decision::Approve, &same).await;
    gw.clock.advance(i64::try_from(gw.state.config.webauthn.challenge_ttl_seconds).unwrap() + 1);
    let r = send(ceremony, credential).await;
    assert_eq!((r.status, r.code()), (401, "ceremony.expired"), "{:?}", r.body);

    let counted = gw.audit_events().await.iter().filter(|e| *e == "decision.counted").count();
    assert_eq!(counted, 0, "nothing counted");
    assert_eq!(gw.state.store.operation(&id).await.unwrap().unwrap().state.as_str(), "pending");
}
