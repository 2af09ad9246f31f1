//! The `countersign` clientDataJSON member: built from the operation, checked
//! against exactly one operation and decision.

use countersign_core::binding::{ApprovalBinding, client_data_json};
use countersign_core::operation::Action;
use countersign_core::{Decision, Error};

use crate::support::{amt, withdrawal};

fn binding() -> ApprovalBinding {
    ApprovalBinding::new(&withdrawal(), Decision::Approve).unwrap()
}

#[test]
fn a_binding_checks_against_its_operation_and_decision() {
    let op = withdrawal();
    binding().check(&op, Decision::Approve).unwrap();
    let reject = ApprovalBinding::new(&op, Decision::Reject).unwrap();
    reject.check(&op, Decision::Reject).unwrap();
    assert_eq!(reject.digest, binding().digest, "digest covers the operation, not the decision");
}

#[test]
fn client_data_json_carries_the_member_and_round_trips() {
    let cdj = client_data_json("Y2hhbGxlbmdl", "https://gateway.example", &binding()).unwrap();
    let text = String::from_utf8(cdj.clone()).unwrap();
    assert!(text.starts_with(r#"{"type":"webauthn.get","challenge":"Y2hhbGxlbmdl","origin":"https://gateway.example","crossOrigin":false,"countersign":{"v":1,"op":"op_01JDXK6Y3M0000000000000001","digest":""#), "{text}");
    assert_eq!(ApprovalBinding::from_client_data_json(&cdj).unwrap(), binding());
}

#[test]
fn each_mismatch_has_its_error() {
    let op = withdrawal();

    let mut b = binding();
    b.v = 2;
    assert_eq!(b.check(&op, Decision::Approve), Err(Error::BindingVersion(2)));

    let mut b = binding();
    b.op = "op_other".into();
    assert_eq!(b.check(&op, Decision::Approve).unwrap_err().code(), "binding.operation_mismatch");

    // The gateway changed the amount shown to the approver: the digest no longer matches.
    let mut tampered = withdrawal();
    if let Action::Withdrawal(w) = &mut tampered.action {
        w.amount = amt("1250");
    }
    assert_eq!(binding().check(&tampered, Decision::Approve), Err(Error::BindingDigestMismatch));

    // Another spelling of the same bytes (padding) is refused.
    let mut b = binding();
    b.digest.push('=');
    assert_eq!(b.check(&op, Decision::Approve), Err(Error::BindingDigestMismatch));

    let mut b = binding();
    b.digest = "not base64!".into();
    assert_eq!(b.check(&op, Decision::Approve), Err(Error::BindingDigestMismatch));

    assert_eq!(
        binding().check(&op, Decision::Reject),
        Err(Error::BindingDecisionMismatch { expected: Decision::Reject, found: Decision::Approve })
    );
}

#[test]
fn malformed_client_data_is_refused_specifically() {
    let member = serde_json::to_string(&binding()).unwrap();
    let code = |json: String| ApprovalBinding::from_client_data_json(json.as_bytes()).unwrap_err().code();
    assert_eq!(code(r#"{"type":"webauthn.get"}"#.into()), "binding.missing");
    assert_eq!(code(r#"{"countersign":"approve"}"#.into()), "binding.missing");
    assert_eq!(code("[]".into()), "binding.missing");
    assert_eq!(
        code(format!(r#"{{"countersign":{member},"countersign":{member}}}"#)),
        "canonical.duplicate_key"
    );
    assert_eq!(code(format!(r#"{{"countersign":{member}}}{{}}"#)), "canonical.trailing_data");
    assert_eq!(code(format!(r#"{{"countersign":{member}"#)), "canonical.malformed_json");
    let unknown = member.replacen("\"v\":1", "\"v\":1,\"amount\":\"1\"", 1);
    assert_eq!(code(format!(r#"{{"countersign":{unknown}}}"#)), "binding.missing");
    let bad_decision = member.replacen("\"approve\"", "\"maybe\"", 1);
    assert_eq!(code(format!(r#"{{"countersign":{bad_decision}}}"#)), "binding.missing");
}
