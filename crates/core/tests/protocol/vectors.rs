//! The published test vectors under `docs/vectors/` are what this code computes.
//!
//! Run with `COUNTERSIGN_BLESS_VECTORS=1` to rewrite them after a deliberate
//! protocol change (then bump the canonical-form version and say so in the docs).

use std::path::PathBuf;

use countersign_core::binding::ApprovalBinding;
use countersign_core::canonical::{self, Digest};
use countersign_core::{Decision, Operation};
use data_encoding::HEXLOWER;
use serde_json::{Value, json};

use crate::support::every_kind;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors")
}

fn blessing() -> bool {
    std::env::var_os("COUNTERSIGN_BLESS_VECTORS").is_some()
}

/// What a vector file says, computed from an operation.
fn vector_for(name: &str, op: &Operation) -> Value {
    let canonical = canonical::encode(op).unwrap();
    let digest = Digest::of_canonical(&canonical);
    let readable: Value = serde_json::from_slice(&canonical).unwrap();
    json!({
        "name": name,
        "operation": readable,
        "canonical_utf8": String::from_utf8(canonical.clone()).unwrap(),
        "canonical_hex": HEXLOWER.encode(&canonical),
        "digest_hex": digest.to_hex(),
        "digest_base64url": digest.to_base64url(),
        "fingerprint": digest.fingerprint().to_string(),
        "binding_approve": ApprovalBinding::new(op, Decision::Approve).unwrap(),
    })
}

#[test]
fn operation_vectors_match_the_code() {
    for (name, op) in every_kind() {
        let path = vectors_dir().join(format!("{name}.json"));
        let expected = vector_for(name, &op);
        if blessing() {
            std::fs::write(&path, serde_json::to_string_pretty(&expected).unwrap() + "\n").unwrap();
            continue;
        }
        let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(file, expected, "vector {name} differs from the code");

        // From the file's own data: readable object -> canonical bytes -> digest.
        let mut object = file["operation"].clone();
        object.as_object_mut().unwrap().remove("v");
        let parsed: Operation = serde_json::from_value(object).unwrap();
        let canonical = canonical::encode(&parsed).unwrap();
        assert_eq!(HEXLOWER.encode(&canonical), file["canonical_hex"].as_str().unwrap());
        let digest = Digest::of_canonical(&canonical);
        assert_eq!(digest.to_hex(), file["digest_hex"].as_str().unwrap());
        assert_eq!(digest.fingerprint().to_string(), file["fingerprint"].as_str().unwrap());
        // Strict decoding takes the canonical bytes back to the same operation.
        assert_eq!(canonical::decode(&canonical).unwrap(), op);
        // The binding member in the file checks against the operation.
        let binding: ApprovalBinding = serde_json::from_value(file["binding_approve"].clone()).unwrap();
        binding.check(&op, Decision::Approve).unwrap();
    }
}

#[test]
fn every_vector_file_is_checked() {
    let mut names: Vec<String> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            n.ends_with(".json")
                && !["decode-errors.json", "certificate.json", "piv.json", "reason.json", "authority.json"]
                    .contains(&n.as_str())
        })
        .collect();
    names.sort();
    let mut known: Vec<String> = every_kind().iter().map(|(n, _)| format!("{n}.json")).collect();
    known.sort();
    assert_eq!(names, known, "a vector file without a fixture (or the reverse)");
}

#[test]
fn the_worked_example_in_protocol_md_is_the_withdrawal_vector() {
    let doc = std::fs::read_to_string(vectors_dir().join("../protocol.md")).unwrap();
    let (_, op) = every_kind().into_iter().find(|(n, _)| *n == "withdrawal-eth").unwrap();
    let v = vector_for("withdrawal-eth", &op);
    for member in ["canonical_utf8", "digest_hex", "digest_base64url", "fingerprint"] {
        let text = v[member].as_str().unwrap();
        assert!(doc.contains(text), "docs/protocol.md lacks the current {member}: {text}");
    }
}

/// `docs/vectors/piv.json`: the message a PIV key signs (docs/protocol.md §14),
/// for the ETH withdrawal vector's digest. `verify.py` recomputes it.
#[test]
fn piv_message_vector_matches_the_code() {
    let op = every_kind().into_iter().find(|(n, _)| *n == "withdrawal-eth").unwrap().1;
    let digest = Digest::of(&op).unwrap();
    let challenge = [0x5a_u8; 32];
    let cases: Vec<Value> = [Decision::Approve, Decision::Reject]
        .into_iter()
        .map(|decision| {
            json!({
                "digest_hex": digest.to_hex(),
                "decision": decision.to_string(),
                "challenge_hex": HEXLOWER.encode(&challenge),
                "message_hex": HEXLOWER.encode(&countersign_core::piv::message(&digest, decision, &challenge)),
            })
        })
        .collect();
    let expected = json!({ "domain": "countersign:piv:v1", "cases": cases });
    let path = vectors_dir().join("piv.json");
    if blessing() {
        std::fs::write(&path, serde_json::to_string_pretty(&expected).unwrap() + "\n").unwrap();
        return;
    }
    let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(file, expected);
}

/// `docs/vectors/reason.json`: the hash a version 2 binding signs for a decision's
/// reason (docs/protocol.md §6), for three texts, and a version 2 member for the ETH
/// withdrawal vector. `verify.py` recomputes them.
#[test]
fn reason_vector_matches_the_code() {
    use countersign_core::binding::{REASON_DOMAIN, reason_hash};
    let op = every_kind().into_iter().find(|(n, _)| *n == "withdrawal-eth").unwrap().1;
    let texts = ["", "destination not on our list", "Zieladresse unbekannt \u{2014} bitte pr\u{fc}fen"];
    let cases: Vec<Value> = texts
        .iter()
        .map(|t| json!({ "reason_utf8_hex": HEXLOWER.encode(t.as_bytes()), "reason_hash": reason_hash(t) }))
        .collect();
    let binding = ApprovalBinding::with_reason(&op, Decision::Reject, Some(texts[1])).unwrap();
    let expected = json!({
        "domain": REASON_DOMAIN,
        "cases": cases,
        "operation_vector": "withdrawal-eth.json",
        "binding_reject_with_reason": binding,
        "reason": texts[1],
    });
    let path = vectors_dir().join("reason.json");
    if blessing() {
        std::fs::write(&path, serde_json::to_string_pretty(&expected).unwrap() + "\n").unwrap();
        return;
    }
    let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(file, expected);
    let parsed: ApprovalBinding = serde_json::from_value(file["binding_reject_with_reason"].clone()).unwrap();
    parsed.check(&op, Decision::Reject).unwrap();
    parsed.check_reason(Some(texts[1])).unwrap();
    assert!(parsed.check_reason(Some("approved by phone")).is_err());
    assert!(parsed.check_reason(None).is_err());
}
