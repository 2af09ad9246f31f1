//! Quorum certificates and release documents, verified offline as settlement does;
//! every field tampered with in turn.

use countersign_core::binding::{ApprovalBinding, client_data_json};
use countersign_core::certificate::*;
use countersign_core::operation::{Action, Role};
use countersign_core::policy::Quorum;
use countersign_core::release::{ReleaseBasis, Trust, sign_release, verify_release};
use countersign_core::{Decision, Operation, Timestamp};
use data_encoding::BASE64URL_NOPAD;
use p256::ecdsa::signature::Signer as _;
use sha2::{Digest as _, Sha256};

use crate::support::*;

pub(crate) const RP: &str = "countersign.example";
pub(crate) const ORIGIN: &str = "https://countersign.example";

pub(crate) fn p256_key(person: &str) -> p256::ecdsa::SigningKey {
    let seed: [u8; 32] = Sha256::digest(person.as_bytes()).into();
    p256::ecdsa::SigningKey::from_bytes(&seed.into()).unwrap()
}

pub(crate) fn gateway_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

fn registry() -> Registry {
    let person = |name: &str, roles: &[Role], groups: &[&str]| RegistryApprover {
        id: id(name),
        roles: roles.iter().copied().collect(),
        groups: groups.iter().map(|g| id(g)).collect(),
        credentials: vec![RegistryCredential {
            credential_id: format!("cred-{name}"),
            algorithm: "es256".into(),
            public_key: BASE64URL_NOPAD
                .encode(p256_key(name).verifying_key().to_sec1_point(false).as_bytes()),
        }],
    };
    Registry {
        version: 1,
        rp_id: RP.into(),
        origins: vec![ORIGIN.into()],
        issued_at: now(),
        approvers: vec![
            person("alice", &[Role::Approver], &["traders"]),
            person("bob", &[Role::Approver], &["traders"]),
            person("carol", &[Role::Approver], &["traders"]),
            person("dave", &[Role::Approver, Role::Admin], &["traders", "risk"]),
            person("erin", &[Role::Admin], &["risk"]),
        ],
    }
}

/// A real assertion: authenticatorData = rpIdHash || flags || counter, signed with
/// ES256 over authData || SHA-256(clientDataJSON).
fn assertion(op: &Operation, who: &str, decision: Decision, flags: u8, counter: u32) -> CertifiedApproval {
    let binding = ApprovalBinding::new(op, decision).unwrap();
    let cdj = client_data_json("Y2hhbGxlbmdl", ORIGIN, &binding).unwrap();
    sign_parts(who, &format!("cred-{who}"), &auth_data(RP, flags, counter), &cdj)
}

pub(crate) fn auth_data(rp: &str, flags: u8, counter: u32) -> Vec<u8> {
    let mut a = Sha256::digest(rp.as_bytes()).to_vec();
    a.push(flags);
    a.extend(counter.to_be_bytes());
    a
}

pub(crate) fn sign_parts(who: &str, cred: &str, auth: &[u8], cdj: &[u8]) -> CertifiedApproval {
    let mut msg = auth.to_vec();
    msg.extend(Sha256::digest(cdj));
    let sig: p256::ecdsa::Signature = p256_key(who).sign(&msg);
    CertifiedApproval {
        approver: id(who),
        credential_id: cred.into(),
        authenticator_data: BASE64URL_NOPAD.encode(auth),
        client_data_json: BASE64URL_NOPAD.encode(cdj),
        signature: BASE64URL_NOPAD.encode(&sig.to_der().to_bytes()),
    }
}

pub(crate) fn large() -> Operation {
    withdrawal() // $37,655.875 from key_mm1 owned by bob: the "large" tier, 2 traders
}

fn two_traders() -> Quorum {
    quorum(&[("traders", 2)])
}

fn good() -> Vec<CertifiedApproval> {
    vec![
        assertion(&large(), "alice", Decision::Approve, 0x05, 7),
        assertion(&large(), "carol", Decision::Approve, 0x05, 1),
    ]
}

fn check(approvals: &[CertifiedApproval]) -> Result<Vec<countersign_core::id::ApproverId>, CertificateError> {
    verify_quorum(&large(), &two_traders(), approvals, &registry(), &policy(), now().plus_seconds(60))
}

fn code(approvals: &[CertifiedApproval]) -> &'static str {
    check(approvals).unwrap_err().code()
}

#[test]
fn two_distinct_traders_certify_a_large_withdrawal() {
    assert_eq!(check(&good()).unwrap(), vec![id("alice"), id("carol")]);
}

#[test]
fn tampering_with_any_field_of_an_approval_is_refused() {
    let edit = |f: &dyn Fn(&mut CertifiedApproval)| {
        let mut a = good();
        f(&mut a[0]);
        a
    };
    let decode = |s: &str| BASE64URL_NOPAD.decode(s.as_bytes()).unwrap();
    // Who and which key.
    assert_eq!(code(&edit(&|a| a.approver = id("dave"))), "certificate.unknown_credential");
    assert_eq!(code(&edit(&|a| a.credential_id = "cred-carol".into())), "certificate.unknown_credential");
    // authenticatorData: relying party, flags, counter (covered by the signature).
    assert_eq!(
        code(&edit(&|a| a.authenticator_data = BASE64URL_NOPAD.encode(&auth_data("evil.example", 5, 7)))),
        "certificate.wrong_rp"
    );
    assert_eq!(
        code(&edit(&|a| a.authenticator_data = BASE64URL_NOPAD.encode(&auth_data(RP, 0x01, 7)))),
        "certificate.user_not_verified"
    );
    assert_eq!(
        code(&edit(&|a| a.authenticator_data = BASE64URL_NOPAD.encode(&auth_data(RP, 0x04, 7)))),
        "certificate.user_not_verified"
    );
    assert_eq!(
        code(&edit(&|a| a.authenticator_data = BASE64URL_NOPAD.encode(&auth_data(RP, 5, 8)))),
        "certificate.bad_signature"
    );
    assert_eq!(
        code(&edit(&|a| a.authenticator_data = BASE64URL_NOPAD.encode(&[0u8; 36]))),
        "certificate.malformed"
    );
    assert_eq!(code(&edit(&|a| a.authenticator_data = "not base64!".into())), "certificate.malformed");
    // clientDataJSON: each member (the signature would fail too; the specific check comes first).
    let cdj_edit = |from: &str, to: &str| {
        edit(&|a| {
            let text = String::from_utf8(decode(&a.client_data_json)).unwrap();
            assert!(text.contains(from), "{text}");
            a.client_data_json = BASE64URL_NOPAD.encode(text.replacen(from, to, 1).as_bytes());
        })
    };
    assert_eq!(code(&cdj_edit("webauthn.get", "webauthn.create")), "certificate.client_data");
    assert_eq!(code(&cdj_edit(ORIGIN, "https://evil.example")), "certificate.client_data");
    assert_eq!(code(&cdj_edit("\"decision\":\"approve\"", "\"decision\":\"reject\"")), "certificate.binding");
    assert_eq!(code(&cdj_edit("\"op\":\"op_", "\"op\":\"xx_")), "certificate.binding");
    assert_eq!(code(&cdj_edit("\"digest\":\"", "\"digest\":\"A")), "certificate.binding");
    assert_eq!(code(&cdj_edit("\"v\":1", "\"v\":2")), "certificate.binding");
    assert_eq!(
        code(&cdj_edit("\"crossOrigin\":false", "\"crossOrigin\":false,\"type\":\"webauthn.get\"")),
        "certificate.client_data"
    );
    assert_eq!(code(&cdj_edit("Y2hhbGxlbmdl", "b3RoZXI")), "certificate.bad_signature");
    // The signature itself.
    assert_eq!(
        code(&edit(&|a| {
            let mut s = decode(&a.signature);
            let last = s.len() - 1;
            s[last] ^= 1;
            a.signature = BASE64URL_NOPAD.encode(&s);
        })),
        "certificate.bad_signature"
    );
    assert_eq!(code(&edit(&|a| a.signature = good()[1].signature.clone())), "certificate.bad_signature");
}

#[test]
fn people_rules_hold_offline() {
    let op = large();
    // One person twice (two assertions, same key) counts once.
    let twice = vec![
        assertion(&op, "alice", Decision::Approve, 5, 7),
        assertion(&op, "alice", Decision::Approve, 5, 8),
    ];
    assert_eq!(code(&twice), "certificate.duplicate_approver");
    // The API key's owner cannot approve.
    let own = vec![
        assertion(&op, "bob", Decision::Approve, 5, 1),
        assertion(&op, "alice", Decision::Approve, 5, 7),
    ];
    assert_eq!(code(&own), "certificate.initiator_approved");
    // Someone without the approver role.
    let admin_only = vec![assertion(&op, "erin", Decision::Approve, 5, 1)];
    assert_eq!(code(&admin_only), "certificate.not_an_approver");
    // Too few, or released after expiry.
    assert_eq!(code(&good()[..1]), "certificate.quorum_not_met");
    let late = verify_quorum(&op, &two_traders(), &good(), &registry(), &policy(), op.expires_at);
    assert_eq!(late.unwrap_err().code(), "certificate.quorum_not_met");
    // A weaker quorum than the policy's floor, or another policy version.
    let weak = verify_quorum(&op, &quorum(&[("traders", 1)]), &good()[..1], &registry(), &policy(), now());
    assert_eq!(weak.unwrap_err().code(), "certificate.quorum_too_weak");
    let mut p8 = policy();
    p8.version = 8;
    let other = verify_quorum(&op, &two_traders(), &good(), &registry(), &p8, now());
    assert_eq!(other.unwrap_err().code(), "certificate.policy_version");
    // A revoked key is simply absent from the registry.
    let mut reg = registry();
    reg.approvers.retain(|p| p.id.as_str() != "carol");
    let revoked = verify_quorum(&op, &two_traders(), &good(), &reg, &policy(), now());
    assert_eq!(revoked.unwrap_err().code(), "certificate.unknown_credential");
}

#[test]
fn the_registry_must_be_signed_by_the_gateway() {
    let signed = SignedRegistry::sign(registry(), &gateway_key()).unwrap();
    assert_eq!(signed.verify(&gateway_key().verifying_key()).unwrap(), &registry());
    let other = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    assert_eq!(signed.verify(&other.verifying_key()).unwrap_err().code(), "certificate.registry_signature");
    // Slipping an attacker's key into a signed registry breaks the signature.
    let mut forged = signed.clone();
    forged.registry.approvers[0].credentials.push(RegistryCredential {
        credential_id: "cred-mallory".into(),
        algorithm: "es256".into(),
        public_key: BASE64URL_NOPAD
            .encode(p256_key("mallory").verifying_key().to_sec1_point(false).as_bytes()),
    });
    assert_eq!(
        forged.verify(&gateway_key().verifying_key()).unwrap_err().code(),
        "certificate.registry_signature"
    );
}

fn trust<'a>(
    gateway: &'a ed25519_dalek::VerifyingKey,
    policy: &'a countersign_core::Policy,
    registry: &'a Registry,
) -> Trust<'a> {
    Trust { gateway, policy, registry }
}

#[test]
fn settlement_refuses_large_transfers_without_a_verified_quorum() {
    let (g, p, r) = (gateway_key().verifying_key(), policy(), registry());
    let t = trust(&g, &p, &r);
    let released = now().plus_seconds(60);
    let json = |doc: &countersign_core::release::ReleaseDocument| serde_json::to_vec(doc).unwrap();

    // With the quorum's approvals: accepted.
    let doc = sign_release(
        &large(),
        ReleaseBasis::Quorum,
        Some(two_traders()),
        good(),
        released,
        None,
        &gateway_key(),
    )
    .unwrap();
    assert_eq!(verify_release(&json(&doc), &t).unwrap(), large());
    // "Allowed by policy" for a large transfer: the gateway's word is not enough.
    let doc =
        sign_release(&large(), ReleaseBasis::AllowedByPolicy, None, vec![], released, None, &gateway_key())
            .unwrap();
    assert_eq!(verify_release(&json(&doc), &t).unwrap_err().code(), "release.quorum_required");
    // A small one is fine on policy alone.
    let small = operation(withdrawal_action("ETH", "1", "3012.47"));
    let doc =
        sign_release(&small, ReleaseBasis::AllowedByPolicy, None, vec![], released, None, &gateway_key())
            .unwrap();
    assert_eq!(verify_release(&json(&doc), &t).unwrap(), small);
    // Approvals for another operation do not carry over.
    let mut other = large();
    other.id = id("op_other");
    let foreign: Vec<_> =
        ["alice", "carol"].iter().map(|w| assertion(&other, w, Decision::Approve, 5, 9)).collect();
    let doc = sign_release(
        &large(),
        ReleaseBasis::Quorum,
        Some(two_traders()),
        foreign,
        released,
        None,
        &gateway_key(),
    )
    .unwrap();
    assert_eq!(verify_release(&json(&doc), &t).unwrap_err().code(), "certificate.binding");
    // Basis and evidence must agree.
    let doc = sign_release(
        &large(),
        ReleaseBasis::Quorum,
        Some(two_traders()),
        vec![],
        released,
        None,
        &gateway_key(),
    )
    .unwrap();
    assert_eq!(verify_release(&json(&doc), &t).unwrap_err().code(), "release.basis_mismatch");
    let doc =
        sign_release(&small, ReleaseBasis::AllowedByPolicy, None, good(), released, None, &gateway_key())
            .unwrap();
    assert_eq!(verify_release(&json(&doc), &t).unwrap_err().code(), "release.basis_mismatch");
}

#[test]
fn release_documents_refuse_every_change() {
    let (g, p, r) = (gateway_key().verifying_key(), policy(), registry());
    let t = trust(&g, &p, &r);
    let small = operation(withdrawal_action("ETH", "1", "3012.47"));
    let signed = || {
        sign_release(&small, ReleaseBasis::AllowedByPolicy, None, vec![], now(), None, &gateway_key())
            .unwrap()
    };
    let check = |doc: &countersign_core::release::ReleaseDocument| {
        verify_release(&serde_json::to_vec(doc).unwrap(), &t)
    };
    let other = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
    let cases: Vec<(&str, countersign_core::release::ReleaseDocument)> = vec![
        (
            "release.unsupported_version",
            countersign_core::release::ReleaseDocument { version: 2, ..signed() },
        ),
        (
            "release.wrong_key",
            countersign_core::release::ReleaseDocument {
                gateway_key: BASE64URL_NOPAD.encode(other.verifying_key().as_bytes()),
                ..signed()
            },
        ),
        (
            "release.bad_signature",
            countersign_core::release::ReleaseDocument {
                released_at: Timestamp::from_unix(1).unwrap(),
                ..signed()
            },
        ),
        (
            "release.bad_signature",
            countersign_core::release::ReleaseDocument { signature: "AAAA".into(), ..signed() },
        ),
        (
            "release.bad_signature",
            countersign_core::release::ReleaseDocument { digest: "00".repeat(32), ..signed() },
        ),
    ];
    for (code, doc) in cases {
        assert_eq!(check(&doc).unwrap_err().code(), code);
    }
    assert_eq!(check(&signed()).unwrap(), small);
    let e = verify_release(b"{\"version\":1,\"version\":1}", &t).unwrap_err();
    assert_eq!(e.code(), "release.malformed");
    let mut v = serde_json::to_value(signed()).unwrap();
    v["extra"] = serde_json::Value::Bool(true);
    assert_eq!(verify_release(&serde_json::to_vec(&v).unwrap(), &t).unwrap_err().code(), "release.malformed");
    // An unfreeze (admin operation) always needs the admin quorum.
    let unfreeze = countersign_core::Operation {
        initiator: countersign_core::Initiator::Approver { approver: id("alice") },
        ..operation(Action::Unfreeze(countersign_core::operation::Unfreeze {
            freeze_started: now(),
            reason: "x".into(),
        }))
    };
    let doc =
        sign_release(&unfreeze, ReleaseBasis::AllowedByPolicy, None, vec![], now(), None, &gateway_key())
            .unwrap();
    assert_eq!(check(&doc).unwrap_err().code(), "release.quorum_required");
}

/// docs/vectors/certificate.json: a registry, an operation, its quorum and two
/// approvals with real ES256 signatures (deterministic RFC 6979), which a compatible
/// verifier must accept; bless with COUNTERSIGN_BLESS_VECTORS=1.
#[test]
fn the_published_certificate_vector_verifies() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors/certificate.json");
    let expected = serde_json::json!({
        "description": "Two traders approve a $37,655.875 withdrawal initiated with bob's API key; policy fixture version 7 (tier 'large': 2 of traders).",
        "registry": registry(),
        "operation": String::from_utf8(countersign_core::canonical::encode(&large()).unwrap()).unwrap(),
        "quorum": two_traders(),
        "approvals": good(),
        "released_at": now().plus_seconds(60),
        "expected_approvers": ["alice", "carol"],
    });
    if std::env::var_os("COUNTERSIGN_BLESS_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&expected).unwrap() + "\n").unwrap();
    }
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(file, expected);
    // Verify from the file's own data.
    let reg: Registry = serde_json::from_value(file["registry"].clone()).unwrap();
    let op = countersign_core::canonical::decode(file["operation"].as_str().unwrap().as_bytes()).unwrap();
    let q: Quorum = serde_json::from_value(file["quorum"].clone()).unwrap();
    let approvals: Vec<CertifiedApproval> = serde_json::from_value(file["approvals"].clone()).unwrap();
    let at: Timestamp = serde_json::from_value(file["released_at"].clone()).unwrap();
    let who = verify_quorum(&op, &q, &approvals, &reg, &policy(), at).unwrap();
    assert_eq!(serde_json::to_value(who).unwrap(), file["expected_approvers"]);
}

/// A decision read back later (history): the signature is checked against the
/// registry, and the reason shown must be the one the key signed (binding v2).
#[test]
fn a_recorded_decisions_reason_is_checked_against_its_signature() {
    let op = large();
    let signed_with = |who: &str, decision, reason: Option<&str>| {
        let binding = ApprovalBinding::with_reason(&op, decision, reason).unwrap();
        let cdj = client_data_json("Y2hhbGxlbmdl", ORIGIN, &binding).unwrap();
        sign_parts(who, &format!("cred-{who}"), &auth_data(RP, 0x05, 3), &cdj)
    };
    let reg = registry();
    let rejected = signed_with("alice", Decision::Reject, Some("not our address"));
    let verdict =
        |reason: Option<&str>, a: &CertifiedApproval| check_decision(&op, Decision::Reject, reason, a, &reg);
    assert_eq!(verdict(Some("not our address"), &rejected), DecisionCheck::Signed);
    assert_eq!(verdict(Some("approved by phone"), &rejected), DecisionCheck::ReasonAltered);
    assert_eq!(verdict(None, &rejected), DecisionCheck::ReasonAltered);
    // An approval without a comment signs the empty reason; none shown is right.
    let approved = signed_with("carol", Decision::Approve, None);
    assert_eq!(check_decision(&op, Decision::Approve, None, &approved, &reg), DecisionCheck::Signed);
    assert_eq!(
        check_decision(&op, Decision::Approve, Some("ok"), &approved, &reg),
        DecisionCheck::ReasonAltered
    );
    // Version 1 signs no reason: any reason shown is the gateway's word.
    let v1 = assertion(&op, "alice", Decision::Reject, 0x05, 4);
    assert_eq!(verdict(None, &v1), DecisionCheck::Signed);
    assert_eq!(verdict(Some("not our address"), &v1), DecisionCheck::ReasonUnsigned);
    // The decision shown must be the one signed, by a key the registry knows.
    assert!(matches!(
        check_decision(&op, Decision::Approve, Some("not our address"), &rejected, &reg),
        DecisionCheck::Invalid { .. }
    ));
    let mut stranger = rejected.clone();
    stranger.credential_id = "cred-mallory".into();
    assert_eq!(verdict(Some("not our address"), &stranger), DecisionCheck::KeyNotInRegistry);
    let mut forged = rejected.clone();
    forged.signature = signed_with("bob", Decision::Reject, Some("not our address")).signature;
    assert!(matches!(verdict(Some("not our address"), &forged), DecisionCheck::Invalid { .. }));
}
