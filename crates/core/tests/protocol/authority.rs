//! The authority chain, verified offline from a pinned genesis: each attack on who
//! may approve is refused with its own code, with real ES256 signatures.

use std::collections::BTreeSet;

use countersign_core::authority::*;
use countersign_core::binding::{ApprovalBinding, client_data_json};
use countersign_core::canonical;
use countersign_core::certificate::{CertifiedApproval, RegistryCredential};
use countersign_core::operation::*;
use countersign_core::release::{ReleaseBasis, sign_release, verify_release_from_genesis};
use countersign_core::{Decision, Operation};
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use sha2::{Digest as _, Sha256};

use crate::certificate::{ORIGIN, RP, auth_data, gateway_key, large, p256_key, sign_parts};
use crate::support::*;

fn sec1(who: &str) -> String {
    BASE64URL_NOPAD.encode(p256_key(who).verifying_key().to_sec1_point(false).as_bytes())
}

fn person(name: &str, roles: &[Role], groups: &[&str]) -> Person {
    Person {
        id: id(name),
        display_name: name.to_uppercase(),
        roles: roles.iter().copied().collect(),
        groups: groups.iter().map(|g| id(g)).collect(),
        keys: vec![RegistryCredential {
            credential_id: format!("cred-{name}"),
            algorithm: "es256".into(),
            public_key: sec1(name),
        }],
    }
}

/// Traders alice, bob, carol; admins dave, erin, frank (policy 7: admins 2).
fn genesis() -> Genesis {
    let trader = |n| person(n, &[Role::Approver], &["traders"]);
    let admin = |n| person(n, &[Role::Admin], &["admins"]);
    Genesis {
        version: 1,
        rp: RelyingParty { id: RP.into(), origins: vec![ORIGIN.into()] },
        people: vec![
            trader("alice"),
            trader("bob"),
            trader("carol"),
            admin("dave"),
            admin("erin"),
            admin("frank"),
        ],
        policy: policy(),
        api_keys: vec![ApiKeyGrant {
            key_id: id("key_mm1"),
            owner: id("bob"),
            algorithm: SigningAlgorithm::Ed25519,
            public_key: Some(BASE64URL_NOPAD.encode(gateway_key().verifying_key().as_bytes())),
            scopes: BTreeSet::from([Scope::Withdraw]),
        }],
        allowlist: vec![],
        created_at: t("2026-11-28T11:00:00Z"),
    }
}

fn sign_genesis(g: &Genesis, who: &str) -> CertifiedApproval {
    let cdj = client_data_json("Z2VuZXNpcw", ORIGIN, &g.binding().unwrap()).unwrap();
    sign_parts(who, &format!("cred-{who}"), &auth_data(RP, 0x05, 1), &cdj)
}

fn signed(g: Genesis) -> SignedGenesis {
    let signatures = g.people.iter().map(|p| sign_genesis(&g, p.id.as_str())).collect();
    SignedGenesis { genesis: g, signatures }
}

fn pinned() -> String {
    genesis().hash().unwrap().to_hex()
}

fn approve(op: &Operation, who: &str) -> CertifiedApproval {
    let binding = ApprovalBinding::with_reason(op, Decision::Approve, None).unwrap();
    let cdj = client_data_json("Y2hhbGxlbmdl", ORIGIN, &binding).unwrap();
    sign_parts(who, &format!("cred-{who}"), &auth_data(RP, 0x05, 2), &cdj)
}

fn admin_op(n: u8, proposer: &str, action: Action) -> Operation {
    Operation {
        id: id(&format!("op_01JDXK6Y3M00000000000000A{n}")),
        initiator: Initiator::Approver { approver: id(proposer) },
        ..operation(action)
    }
}

/// An enrolment of the key `cred-<key>` (the P-256 key seeded with `key`) for `who`.
fn enroll(n: u8, who: &str, key: &str) -> Operation {
    admin_op(
        n,
        "dave",
        Action::ApproverEnroll(ApproverEnroll {
            approver: id(who),
            display_name: who.to_uppercase(),
            roles: BTreeSet::from([Role::Approver]),
            groups: BTreeSet::from([id("traders")]),
            credential: CredentialSummary {
                credential_id: format!("cred-{key}"),
                key_kind: KeyKind::Fido2,
                aaguid: None,
                public_key_sha256: HEXLOWER
                    .encode(&Sha256::digest(BASE64URL_NOPAD.decode(sec1(key).as_bytes()).unwrap())),
                label: "blue key".into(),
            },
        }),
    )
}

fn enroll_gina() -> Operation {
    enroll(1, "gina", "gina")
}

fn revoke(n: u8, proposer: &str, who: &str) -> Operation {
    admin_op(
        n,
        proposer,
        Action::ApproverRevoke(ApproverRevoke {
            approver: id(who),
            credential_id: None,
            reason: "left".into(),
        }),
    )
}

fn link(prev: &Head, op: &Operation, by: &[&str]) -> Link {
    Link {
        index: prev.index + 1,
        prev: prev.hash.clone(),
        operation: String::from_utf8(canonical::encode(op).unwrap()).unwrap(),
        approvals: by.iter().map(|w| approve(op, w)).collect(),
        applied_at: now().plus_seconds(30),
        public_key: match &op.action {
            Action::ApproverEnroll(e) => Some(sec1(e.credential.credential_id.trim_start_matches("cred-"))),
            _ => None,
        },
        consent: None,
    }
}

/// A signature by `who` with the key seeded by `key`, approving `op`.
fn approve_with(op: &Operation, who: &str, key: &str) -> CertifiedApproval {
    let binding = ApprovalBinding::with_reason(op, Decision::Approve, None).unwrap();
    let cdj = client_data_json("Y2hhbGxlbmdl", ORIGIN, &binding).unwrap();
    let mut signed = sign_parts(key, &format!("cred-{key}"), &auth_data(RP, 0x05, 3), &cdj);
    signed.approver = id(who);
    signed
}

fn authority() -> Authority {
    Authority::new(&pinned(), &signed(genesis())).unwrap()
}

fn extend(a: &mut Authority, l: &Link) -> &'static str {
    a.extend([l]).unwrap_err().code()
}

/// A quorum release of `op` decided under `head`, approved by `by`, as JSON.
fn release(op: &Operation, head: &Head, by: &[&str]) -> Vec<u8> {
    let approvals = by.iter().map(|w| approve(op, w)).collect();
    let doc = sign_release(
        op,
        ReleaseBasis::Quorum,
        Some(quorum(&[("traders", 2)])),
        approvals,
        now().plus_seconds(60),
        Some(head.clone()),
        &gateway_key(),
    )
    .unwrap();
    serde_json::to_vec(&doc).unwrap()
}

fn settle(json: &[u8], a: &Authority) -> Result<Operation, &'static str> {
    verify_release_from_genesis(json, &gateway_key().verifying_key(), a).map_err(|e| e.code())
}

#[test]
fn a_genesis_signed_by_every_key_it_lists_is_the_root_settlement_verifies_from() {
    let a = authority();
    assert_eq!(a.head(), &Head { index: 0, hash: pinned() });
    assert_eq!(settle(&release(&large(), a.head(), &["alice", "carol"]), &a).unwrap(), large());
    // The same evidence without a head is refused: it says nothing about authority.
    let legacy =
        sign_release(&large(), ReleaseBasis::Quorum, None, vec![], now(), None, &gateway_key()).unwrap();
    assert_eq!(settle(&serde_json::to_vec(&legacy).unwrap(), &a), Err("authority.missing"));
}

#[test]
fn a_genesis_is_refused_unless_it_is_the_pinned_one_and_every_key_signed_it() {
    let code = |pin: &str, s: &SignedGenesis| Authority::new(pin, s).unwrap_err().code();
    let good = signed(genesis());
    assert_eq!(code(&"0".repeat(64), &good), "authority.genesis_mismatch");

    // An extra person slipped in after the signatures: another hash.
    let mut grown = good.clone();
    grown.genesis.people.push(person("mallory", &[Role::Admin], &["admins"]));
    assert_eq!(code(&pinned(), &grown), "authority.genesis_mismatch");

    // One founding key did not sign.
    let mut missing = good.clone();
    missing.signatures.retain(|s| s.approver.as_str() != "erin");
    assert_eq!(code(&pinned(), &missing), "authority.genesis_unsigned");

    // A signature over something else (a genesis with another policy), or by a stranger.
    let mut other = genesis();
    other.policy.approval_ttl_seconds += 1;
    let mut forged = good.clone();
    forged.signatures[0] = sign_genesis(&other, "alice");
    assert_eq!(code(&pinned(), &forged), "authority.genesis_signature");
    let mut stranger = good;
    stranger.signatures.push(sign_genesis(&genesis(), "mallory"));
    assert_eq!(code(&pinned(), &stranger), "authority.genesis_signature");
}

#[test]
fn an_enrolment_needs_the_admin_quorum_in_force_before_it() {
    let genesis_head = authority().head().clone();
    let op = enroll_gina();

    // One admin is not the quorum (two admins).
    assert_eq!(extend(&mut authority(), &link(&genesis_head, &op, &["erin"])), "authority.quorum_not_met");
    // The proposer does not count.
    assert_eq!(
        extend(&mut authority(), &link(&genesis_head, &op, &["dave", "erin"])),
        "authority.initiator_approved"
    );
    // Traders are not admins.
    assert_eq!(
        extend(&mut authority(), &link(&genesis_head, &op, &["alice", "erin"])),
        "authority.not_an_admin"
    );
    // A key other than the one approved.
    let mut swapped = link(&genesis_head, &op, &["erin", "frank"]);
    swapped.public_key = Some(sec1("mallory"));
    assert_eq!(extend(&mut authority(), &swapped), "authority.bad_change");
    // Not following the head.
    let mut stray = link(&genesis_head, &op, &["erin", "frank"]);
    stray.prev = "00".repeat(32);
    assert_eq!(extend(&mut authority(), &stray), "authority.broken_link");

    // Two other admins: gina may now approve, from the new head on.
    let mut a = authority();
    assert_eq!(a.extend([&link(&genesis_head, &op, &["erin", "frank"])]).unwrap(), 1);
    assert_eq!(settle(&release(&large(), a.head(), &["alice", "gina"]), &a).unwrap(), large());
    // Not under the genesis, where she was nobody.
    assert_eq!(
        settle(&release(&large(), &genesis_head, &["alice", "gina"]), &a),
        Err("certificate.unknown_credential")
    );
}

#[test]
fn a_further_key_needs_its_persons_consent_with_a_key_they_hold() {
    let head = authority().head().clone();
    // Admins give carol a key she never saw (or an admin a second identity as carol).
    let second = enroll(6, "carol", "carol2");
    let without = link(&head, &second, &["erin", "frank"]);
    assert_eq!(extend(&mut authority(), &without), "authority.consent_missing");
    // Signed by the new key itself, or by someone else's key: not her consent.
    let mut by_new_key = without.clone();
    by_new_key.consent = Some(approve_with(&second, "carol", "carol2"));
    assert_eq!(extend(&mut authority(), &by_new_key), "authority.consent_missing");
    let mut by_admin = without.clone();
    by_admin.consent = Some(approve_with(&second, "carol", "erin"));
    assert_eq!(extend(&mut authority(), &by_admin), "authority.consent_missing");
    // Her own key over another operation.
    let mut elsewhere = without.clone();
    elsewhere.consent = Some(approve(&enroll_gina(), "carol"));
    assert_eq!(extend(&mut authority(), &elsewhere), "authority.binding");
    // With her consent: she holds both keys.
    let mut consented = without;
    consented.consent = Some(approve(&second, "carol"));
    let mut a = authority();
    a.extend([&consented]).unwrap();
    assert_eq!(a.latest().people[&id::<countersign_core::id::ApproverId>("carol")].keys.len(), 2);
    // A new person has no key to consent with, and needs none; a consent there is refused.
    let mut stray = link(&head, &enroll_gina(), &["erin", "frank"]);
    stray.consent = Some(approve(&enroll_gina(), "carol"));
    assert_eq!(extend(&mut authority(), &stray), "authority.bad_change");
}

#[test]
fn an_applied_operation_never_applies_again_and_a_key_is_listed_once() {
    // gina's enrolment, then her key revoked: replaying the enrolment (approvals bind
    // the operation, not the head) does not give the key back.
    let mut a = authority();
    let enrolment = link(a.head(), &enroll_gina(), &["erin", "frank"]);
    a.extend([&enrolment]).unwrap();
    let gina_key = admin_op(
        8,
        "dave",
        Action::ApproverRevoke(ApproverRevoke {
            approver: id("gina"),
            credential_id: Some("cred-gina".into()),
            reason: "flagged as cloned".into(),
        }),
    );
    a.extend([&link(a.head(), &gina_key, &["erin"])]).unwrap();
    let again = Link { index: 3, prev: a.head().hash.clone(), ..enrolment };
    assert_eq!(extend(&mut a, &again), "authority.replayed");
    // Nor under a new operation: a key once listed is never listed again.
    let fresh = enroll(9, "gina", "gina");
    let fresh = link(a.head(), &fresh, &["erin", "frank"]);
    assert_eq!(extend(&mut a, &fresh), "authority.bad_change");

    // One public key is never two people: alice's key under another id, for mallory.
    let mut twin = enroll(10, "mallory", "alice");
    if let Action::ApproverEnroll(e) = &mut twin.action {
        e.credential.credential_id = "cred-twin".into();
    }
    let head = authority().head().clone();
    assert_eq!(extend(&mut authority(), &link(&head, &twin, &["erin", "frank"])), "authority.bad_change");
    let mut g = genesis();
    g.people[1].keys[0].public_key = g.people[0].keys[0].public_key.clone();
    assert_eq!(g.validate().unwrap_err().code(), "authority.genesis_invalid");
}

#[test]
fn settlement_holds_a_release_to_the_chains_deny_rules_allowlist_and_scopes() {
    let a = authority();
    let small = operation(withdrawal_action("ETH", "0.5", "1500"));
    let allowed = |op: &Operation, a: &Authority| {
        let doc = sign_release(
            op,
            ReleaseBasis::AllowedByPolicy,
            None,
            vec![],
            now(),
            Some(a.head().clone()),
            &gateway_key(),
        );
        settle(&serde_json::to_vec(&doc.unwrap()).unwrap(), a)
    };
    // Policy 7 enforces the allowlist and holds other destinations for a trader:
    // "allowed by policy" to a destination the chain never listed is refused.
    assert_eq!(allowed(&small, &a), Err("authority.floor_raised"));
    // Listed in the genesis long enough ago: settled.
    let mut g = genesis();
    g.allowlist.push(AllowlistEntry {
        account: id("acct_main"),
        network: id("ethereum"),
        destination: Destination { address: "0x8ba1f109551bD432803012645Ac136ddd64DBA72".into(), memo: None },
        label: "desk".into(),
        added_at: t("2026-01-01T00:00:00Z"),
    });
    let listed = Authority::new(&g.hash().unwrap().to_hex(), &signed(g.clone())).unwrap();
    assert_eq!(allowed(&small, &listed).unwrap(), small);
    // Listed, but still cooling off when the operation was made (24 h in policy 7).
    g.allowlist[0].added_at = t("2026-11-28T00:00:00Z");
    let cooling = Authority::new(&g.hash().unwrap().to_hex(), &signed(g.clone())).unwrap();
    assert_eq!(allowed(&small, &cooling), Err("authority.floor_raised"));
    // A deny rule refuses even a quorum release.
    let mut sanctioned = large();
    if let Action::Withdrawal(w) = &mut sanctioned.action {
        w.destination.address = "0x000000000000000000000000000000000000dEaD".into();
    }
    assert_eq!(settle(&release(&sanctioned, a.head(), &["alice", "carol"]), &a), Err("authority.denied"));
    // An API key the chain lists without the withdraw scope initiates no withdrawal.
    let mut g = genesis();
    g.api_keys[0].scopes = BTreeSet::from([Scope::Read]);
    let read_only = Authority::new(&g.hash().unwrap().to_hex(), &signed(g)).unwrap();
    let r = release(&large(), read_only.head(), &["alice", "carol"]);
    assert_eq!(settle(&r, &read_only), Err("authority.unknown_api_key"));
}

#[test]
fn a_release_decided_before_a_group_change_no_longer_completes_its_quorum() {
    let genesis_head = authority().head().clone();
    let decided = release(&large(), &genesis_head, &["alice", "carol"]);
    // carol (with her consent) moves to the risk group: two traders are no longer there.
    let mut moved = enroll(11, "carol", "carol3");
    if let Action::ApproverEnroll(e) = &mut moved.action {
        e.groups = BTreeSet::from([id("risk")]);
    }
    let mut l = link(&genesis_head, &moved, &["erin", "frank"]);
    l.consent = Some(approve(&moved, "carol"));
    let mut a = authority();
    a.extend([&l]).unwrap();
    assert_eq!(settle(&decided, &a), Err("authority.roles_changed"));
}

#[test]
fn keys_the_chain_never_produced_do_not_count() {
    // A row written into the gateway's tables, or a registry signed with a stolen
    // gateway key, naming a key of mallory's for carol: the chain does not list it.
    let a = authority();
    let mut approvals = vec![approve(&large(), "alice"), approve(&large(), "mallory")];
    approvals[1].approver = id("carol");
    approvals[1].credential_id = "cred-carol".into();
    let doc = sign_release(
        &large(),
        ReleaseBasis::Quorum,
        Some(quorum(&[("traders", 2)])),
        approvals,
        now().plus_seconds(60),
        Some(a.head().clone()),
        &gateway_key(),
    )
    .unwrap();
    assert_eq!(settle(&serde_json::to_vec(&doc).unwrap(), &a), Err("certificate.bad_signature"));
    // An invented person.
    assert_eq!(
        settle(&release(&large(), a.head(), &["alice", "mallory"]), &a),
        Err("certificate.unknown_credential")
    );
    // Roles edited in the tables: bob holding approver rights does not make dave a trader.
    assert_eq!(
        settle(&release(&large(), a.head(), &["alice", "dave"]), &a),
        Err("certificate.not_an_approver")
    );
}

#[test]
fn a_revoked_admin_approves_no_later_link_and_a_revocation_needs_one_admin() {
    let mut a = authority();
    let first = link(a.head(), &revoke(2, "dave", "erin"), &[]);
    assert_eq!(extend(&mut a, &first), "authority.quorum_not_met");
    a.extend([&link(a.head(), &revoke(2, "dave", "erin"), &["frank"])]).unwrap();
    let late = link(a.head(), &enroll_gina(), &["erin", "frank"]);
    assert_eq!(extend(&mut a, &late), "authority.unknown_credential");
    // The admin who proposes a revocation may sign it alone; a trader may not.
    let own = link(a.head(), &revoke(13, "dave", "carol"), &["dave"]);
    a.extend([&own]).unwrap();
    assert!(!a.latest().people.contains_key(&id::<countersign_core::id::ApproverId>("carol")));
    let by_trader = link(a.head(), &revoke(14, "dave", "bob"), &["alice"]);
    assert_eq!(extend(&mut a, &by_trader), "authority.not_an_admin");
}

#[test]
fn a_verifier_that_saw_a_later_head_refuses_what_it_removed() {
    let genesis_head = authority().head().clone();
    let decided = release(&large(), &genesis_head, &["alice", "carol"]);

    // carol is revoked after the release was decided.
    let mut a = authority();
    a.extend([&link(&genesis_head, &revoke(3, "dave", "carol"), &["erin"])]).unwrap();
    assert_eq!(settle(&decided, &a), Err("authority.revoked_since"));

    // The large tier is raised to three traders.
    let mut stricter = policy();
    stricter.version = 8;
    stricter.withdrawal_tiers[0].quorum = quorum(&[("traders", 3)]);
    let update = admin_op(4, "dave", Action::PolicyUpdate(PolicyUpdate { policy: stricter }));
    let mut b = authority();
    b.extend([&link(&genesis_head, &update, &["erin", "frank"])]).unwrap();
    assert_eq!(settle(&decided, &b), Err("authority.floor_raised"));
}

#[test]
fn the_chain_never_goes_back_and_unknown_heads_are_refused() {
    let mut a = authority();
    let genesis_head = a.head().clone();
    let l1 = link(&genesis_head, &enroll_gina(), &["erin", "frank"]);
    a.extend([&l1]).unwrap();
    // The same link again is nothing new; a different link 1 is a rewritten history.
    assert_eq!(a.extend([&l1]).unwrap(), 0);
    let other = link(&genesis_head, &revoke(5, "dave", "carol"), &["erin"]);
    assert_eq!(extend(&mut a, &other), "authority.fork");
    // A release under a head this verifier does not hold (e.g. from a rolled-back
    // gateway's other history).
    let elsewhere = Head { index: 1, hash: other.hash().unwrap().to_hex() };
    assert_eq!(
        settle(&release(&large(), &elsewhere, &["alice", "carol"]), &a),
        Err("authority.unknown_head")
    );
}

#[test]
fn only_api_keys_the_chain_admits_initiate_settled_operations() {
    let a = authority();
    let foreign = Operation {
        initiator: Initiator::ApiKey {
            key_id: id("key_backdoor"),
            owner: id("bob"),
            source_ip: "203.0.113.7".parse().unwrap(),
        },
        ..large()
    };
    assert_eq!(
        settle(&release(&foreign, a.head(), &["alice", "carol"]), &a),
        Err("authority.unknown_api_key")
    );
}

#[test]
fn heads_and_links_round_trip_through_json() {
    let a = authority();
    let doc = AuthorityDocument {
        genesis: signed(genesis()),
        links: vec![link(a.head(), &enroll_gina(), &["erin", "frank"])],
    };
    let json = serde_json::to_string(&doc).unwrap();
    let back: AuthorityDocument = serde_json::from_str(&json).unwrap();
    let verified = Authority::from_document(&pinned(), &back).unwrap();
    assert_eq!(verified.head().index, 1);
    assert_eq!(verified.genesis_hash(), pinned());
    assert_eq!(verified.latest().people.len(), 7);
}

/// docs/vectors/authority.json: a genesis signed by its six keys, a link enrolling
/// gina approved by two admins, and a release approved by alice and gina under that
/// link, all with real ES256 signatures (deterministic RFC 6979) and a real Ed25519
/// gateway signature; plus inputs a verifier must refuse, each with its code.
/// `verify.py` checks it independently. Bless with COUNTERSIGN_BLESS_VECTORS=1.
#[test]
fn the_published_authority_vector_verifies() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors/authority.json");
    let mut a = authority();
    let genesis_head = a.head().clone();
    let l1 = link(&genesis_head, &enroll_gina(), &["erin", "frank"]);
    a.extend([&l1]).unwrap();
    let doc = AuthorityDocument { genesis: signed(genesis()), links: vec![l1] };
    let released = release(&large(), a.head(), &["alice", "gina"]);
    let value = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).unwrap();

    let weak = link(&genesis_head, &enroll_gina(), &["erin"]);
    let mut unsigned = signed(genesis());
    unsigned.signatures.retain(|s| s.approver.as_str() != "erin");
    let stranger = release(&large(), a.head(), &["alice", "mallory"]);
    let unconsented = link(&genesis_head, &enroll(6, "carol", "carol2"), &["erin", "frank"]);
    let expected = serde_json::json!({
        "description": "A genesis (traders alice, bob, carol; admins dave, erin, frank; policy fixture version 7, admin quorum 2 of admins; API key key_mm1 owned by bob) signed by its six keys; link 1 enrols gina (a trader), proposed by dave and approved by erin and frank; a $37,655.875 withdrawal from key_mm1 approved by alice and gina under head 1.",
        "pinned_genesis": pinned(),
        "gateway_key": BASE64URL_NOPAD.encode(gateway_key().verifying_key().as_bytes()),
        "authority": doc,
        "release": value(&released),
        "expected": {"head": a.head(), "operation_id": large().id, "approvers": ["alice", "gina"]},
        "refused": [
            {"name": "link 1 approved by one admin", "link": weak, "code": "authority.quorum_not_met"},
            {"name": "the genesis without erin's signature", "genesis": unsigned, "code": "authority.genesis_unsigned"},
            {"name": "a release approved by a key the chain never produced", "release": value(&stranger), "code": "certificate.unknown_credential"},
            {"name": "link 1 gives carol a further key without her consent", "link": unconsented, "code": "authority.consent_missing"},
        ],
    });
    // What the vector claims holds here too.
    assert_eq!(settle(&released, &a).unwrap(), large());
    assert_eq!(extend(&mut authority(), &weak), "authority.quorum_not_met");
    assert_eq!(Authority::new(&pinned(), &unsigned).unwrap_err().code(), "authority.genesis_unsigned");
    assert_eq!(settle(&stranger, &a), Err("certificate.unknown_credential"));
    assert_eq!(extend(&mut authority(), &unconsented), "authority.consent_missing");
    if std::env::var_os("COUNTERSIGN_BLESS_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&expected).unwrap() + "\n").unwrap();
        return;
    }
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(file, expected, "docs/vectors/authority.json differs from the code");
}

#[test]
fn the_person_a_further_key_is_for_may_decide_it_as_consent_but_not_a_revocation_about_them() {
    use countersign_core::rules::{NotDecidable, may_decide};
    let trader = BTreeSet::from([Role::Approver]);
    let second = enroll(6, "carol", "carol2");
    assert_eq!(may_decide(&id("carol"), &trader, &second, true, now()), Ok(()));
    // Still not once it is decided or expired, and nobody else without the admin role.
    assert_eq!(may_decide(&id("carol"), &trader, &second, false, now()), Err(NotDecidable::NotPending));
    assert_eq!(
        may_decide(&id("carol"), &trader, &second, true, second.expires_at),
        Err(NotDecidable::Expired)
    );
    assert_eq!(
        may_decide(&id("alice"), &trader, &second, true, now()),
        Err(NotDecidable::WrongRole(Role::Admin))
    );
    let admin = BTreeSet::from([Role::Admin]);
    assert_eq!(
        may_decide(&id("carol"), &admin, &revoke(7, "dave", "carol"), true, now()),
        Err(NotDecidable::Subject)
    );
    // The admin who proposes a revocation signs it at once; anything else they
    // propose, others decide.
    assert_eq!(may_decide(&id("dave"), &admin, &revoke(7, "dave", "carol"), true, now()), Ok(()));
    // An admin who proposed a further key for themselves consents to it too.
    let own = enroll(12, "dave", "dave2");
    assert_eq!(may_decide(&id("dave"), &admin, &own, true, now()), Ok(()));
    assert_eq!(may_decide(&id("dave"), &admin, &enroll_gina(), true, now()), Err(NotDecidable::Initiator));
}
