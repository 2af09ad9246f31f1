//! Every way strict decoding can refuse input, each with its specific error, and the
//! same cases published in `docs/vectors/decode-errors.json` for other implementations.

use countersign_core::canonical;
use data_encoding::HEXLOWER;
use serde_json::{Value, json};

use crate::support::{every_kind, withdrawal};

fn canonical_withdrawal() -> String {
    String::from_utf8(canonical::encode(&withdrawal()).unwrap()).unwrap()
}

fn canonical_of(name: &str) -> String {
    let op = every_kind().into_iter().find(|(n, _)| *n == name).unwrap().1;
    String::from_utf8(canonical::encode(&op).unwrap()).unwrap()
}

/// (name, input bytes, expected error code)
fn cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let c = canonical_withdrawal();
    let replace = |from: &str, to: &str| {
        assert!(c.contains(from), "fixture lacks {from}");
        c.replacen(from, to, 1).into_bytes()
    };
    let mut not_utf8 = c.clone().into_bytes();
    let at = c.find("acct_main").unwrap();
    not_utf8[at] = 0xff;
    vec![
        ("empty input", vec![], "canonical.malformed_json"),
        ("truncated", c.as_bytes()[..c.len() - 1].to_vec(), "canonical.malformed_json"),
        ("invalid UTF-8 inside a string", not_utf8, "canonical.malformed_json"),
        ("duplicate top-level key", replace("{\"action\"", "{\"v\":1,\"action\""), "canonical.duplicate_key"),
        (
            "duplicate nested key",
            replace("\"amount\":\"12.5\"", "\"amount\":\"12.5\",\"amount\":\"12.5\""),
            "canonical.duplicate_key",
        ),
        ("second JSON value after the first", format!("{c}{{}}").into_bytes(), "canonical.trailing_data"),
        ("garbage after the value", format!("{c}x").into_bytes(), "canonical.trailing_data"),
        ("trailing newline", format!("{c}\n").into_bytes(), "canonical.not_canonical"),
        ("top level is an array", format!("[{c}]").into_bytes(), "canonical.missing_version"),
        ("no version member", replace(",\"v\":1}", "}"), "canonical.missing_version"),
        ("version is a string", replace(",\"v\":1}", ",\"v\":\"1\"}"), "canonical.missing_version"),
        ("version 2", replace(",\"v\":1}", ",\"v\":2}"), "canonical.unknown_version"),
        ("version 0", replace(",\"v\":1}", ",\"v\":0}"), "canonical.unknown_version"),
        ("whitespace between members", replace(",\"v\":1}", ", \"v\":1}"), "canonical.not_canonical"),
        (
            "members out of order",
            c.replacen(",\"v\":1}", "}", 1).replacen("{\"action\"", "{\"v\":1,\"action\"", 1).into_bytes(),
            "canonical.not_canonical",
        ),
        ("needless unicode escape", replace("acct_main", "\\u0061cct_main"), "canonical.not_canonical"),
        ("version written as 1.0", replace(",\"v\":1}", ",\"v\":1.0}"), "canonical.missing_version"),
        ("unknown member", replace(",\"v\":1}", ",\"v\":1,\"zz\":true}"), "canonical.invalid_operation"),
        ("missing member", replace("\"policy_version\":7,", ""), "canonical.invalid_operation"),
        ("amount zero", replace("\"amount\":\"12.5\"", "\"amount\":\"0\""), "canonical.invalid_operation"),
        (
            "amount with trailing zero",
            replace("\"amount\":\"12.5\"", "\"amount\":\"12.50\""),
            "canonical.invalid_operation",
        ),
        (
            "amount negative",
            replace("\"amount\":\"12.5\"", "\"amount\":\"-12.5\""),
            "canonical.invalid_operation",
        ),
        (
            "amount as a number",
            replace("\"amount\":\"12.5\"", "\"amount\":12.5"),
            "canonical.invalid_operation",
        ),
        (
            "timestamp with offset",
            replace("2026-11-28T13:00:00Z", "2026-11-28T13:00:00+00:00"),
            "canonical.invalid_operation",
        ),
        (
            "expiry before creation",
            replace("2026-11-28T13:00:00Z", "2026-11-28T11:00:00Z"),
            "canonical.invalid_operation",
        ),
        (
            "unknown operation kind",
            replace("\"kind\":\"withdrawal\"", "\"kind\":\"wire_transfer\""),
            "canonical.invalid_operation",
        ),
        ("identifier with a space", replace("acct_main", "acct main"), "canonical.invalid_operation"),
        (
            "memo null instead of absent",
            replace("DBA72\"}", "DBA72\",\"memo\":null}"),
            "canonical.not_canonical",
        ),
        (
            "set out of order",
            canonical_of("api-key-create")
                .replacen("[\"read\",\"withdraw\"]", "[\"withdraw\",\"read\"]", 1)
                .into_bytes(),
            "canonical.not_canonical",
        ),
        (
            "unknown member beside kind",
            replace("\"kind\":\"withdrawal\"}", "\"kind\":\"withdrawal\",\"note\":\"x\"}"),
            "canonical.invalid_operation",
        ),
        (
            "bidi override in a label",
            canonical_of("allowlist-add-unicode-label")
                .replacen("Cold storage", "Cold\u{202E}storage", 1)
                .into_bytes(),
            "canonical.invalid_operation",
        ),
        (
            "zero-width space in a name",
            canonical_of("approver-enroll").replacen("Dave Okafor", "Dave\u{200B}Okafor", 1).into_bytes(),
            "canonical.invalid_operation",
        ),
        (
            "CIDR with host bits set",
            canonical_of("api-key-create").replacen("198.51.100.0/24", "198.51.100.1/24", 1).into_bytes(),
            "canonical.invalid_operation",
        ),
        (
            "credential id not base64url",
            canonical_of("approver-enroll")
                .replacen("kZ8n0c2mYH1cXv7pJ3m5Qw", "kZ8n0c2m+H1cXv7pJ3m5Qw", 1)
                .into_bytes(),
            "canonical.invalid_operation",
        ),
        (
            "roles out of order",
            canonical_of("approver-enroll")
                .replacen("[\"admin\",\"approver\"]", "[\"approver\",\"admin\"]", 1)
                .into_bytes(),
            "canonical.not_canonical",
        ),
        (
            "inconsistent embedded policy",
            canonical_of("policy-update")
                .replacen("\"approval_ttl_seconds\":3600", "\"approval_ttl_seconds\":0", 1)
                .into_bytes(),
            "policy.invalid",
        ),
        (
            "HMAC key through the quorum",
            canonical_of("api-key-create").replacen("\"ed25519\"", "\"hmac_sha256\"", 1).into_bytes(),
            "canonical.invalid_operation",
        ),
        (
            "API public key one byte short",
            canonical_of("api-key-create")
                .replacen(
                    "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                    "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHU",
                    1,
                )
                .into_bytes(),
            "canonical.invalid_operation",
        ),
        (
            "set with a duplicate",
            canonical_of("api-key-create")
                .replacen("[\"read\",\"withdraw\"]", "[\"read\",\"read\",\"withdraw\"]", 1)
                .into_bytes(),
            "canonical.not_canonical",
        ),
    ]
}

#[test]
fn each_malformed_input_gets_its_specific_error() {
    for (name, input, code) in cases() {
        match canonical::decode(&input) {
            Ok(_) => panic!("{name}: decoded, expected {code}"),
            Err(e) => assert_eq!(e.code(), code, "{name}: got {e}"),
        }
    }
}

#[test]
fn the_unmodified_fixture_decodes() {
    // Guards the cases above: each fails because of its one change, not the base.
    assert_eq!(canonical::decode(canonical_withdrawal().as_bytes()).unwrap(), withdrawal());
}

#[test]
fn published_decode_error_vectors_match() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors/decode-errors.json");
    let expected: Vec<Value> = cases()
        .into_iter()
        .map(|(name, input, code)| json!({"name": name, "input_hex": HEXLOWER.encode(&input), "error": code}))
        .collect();
    let expected = Value::Array(expected);
    if std::env::var_os("COUNTERSIGN_BLESS_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&expected).unwrap() + "\n").unwrap();
        return;
    }
    let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(file, expected);
}
