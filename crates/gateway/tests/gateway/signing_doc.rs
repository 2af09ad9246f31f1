//! The worked example in docs/api-signing.md is exactly what a client computes, and
//! the gateway accepts it.

use countersign_gateway::auth::string_to_sign;
use countersign_gateway::keys::hmac_sha256;
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use ed25519_dalek::{Signer, SigningKey};
use hmac::Mac;
use sha2::{Digest, Sha256};

pub const SEED: [u8; 32] = [0x2a; 32];
pub const HMAC_SECRET: [u8; 32] = [0x0b; 32];
pub const TIMESTAMP: i64 = 1_795_867_200;
pub const NONCE: &str = "c2f1a0e4b7d94e5f8a61";
pub const IDEMPOTENCY_KEY: &str = "order-20261128-0001";
pub const BODY: &str = r#"{"account":"acct_main","amount":"1.5","asset":"ETH","destination":{"address":"0x8ba1f109551bD432803012645Ac136ddd64DBA72"},"network":"ethereum"}"#;

pub struct Example {
    pub public_key: String,
    pub body_hash: String,
    pub string_to_sign: String,
    pub ed25519: String,
    pub hmac: String,
}

pub fn example() -> Example {
    let sk = SigningKey::from_bytes(&SEED);
    let message =
        string_to_sign("POST", "/v1/withdrawals", "", TIMESTAMP, NONCE, IDEMPOTENCY_KEY, BODY.as_bytes());
    Example {
        public_key: BASE64URL_NOPAD.encode(sk.verifying_key().as_bytes()),
        body_hash: HEXLOWER.encode(&Sha256::digest(BODY.as_bytes())),
        string_to_sign: String::from_utf8(message.clone()).unwrap(),
        ed25519: BASE64URL_NOPAD.encode(&sk.sign(&message).to_bytes()),
        hmac: BASE64URL_NOPAD.encode(&hmac_sha256(&HMAC_SECRET, &[&message]).finalize().into_bytes()),
    }
}

#[test]
fn the_document_shows_the_computed_values() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api-signing.md")).unwrap();
    let e = example();
    for (name, value) in [
        ("public key", &e.public_key),
        ("body hash", &e.body_hash),
        ("string to sign", &e.string_to_sign),
        ("Ed25519 signature", &e.ed25519),
        ("HMAC signature", &e.hmac),
    ] {
        assert!(doc.contains(value.as_str()), "docs/api-signing.md lacks the {name}:\n{value}");
    }
    assert!(
        doc.contains(BODY)
            && doc.contains(NONCE)
            && doc.contains(IDEMPOTENCY_KEY)
            && doc.contains(&TIMESTAMP.to_string())
    );
}

#[tokio::test]
async fn the_gateway_accepts_the_example_request() {
    use crate::support::*;
    let gw = Gateway::start(Db::Sqlite).await;
    gw.clock.set(countersign_core::Timestamp::from_unix(TIMESTAMP).unwrap());
    let doc_key = countersign_gateway::store::ApiKeyRecord {
        id: "key_doc".parse().unwrap(),
        owner: "bob".parse().unwrap(),
        label: "the documented example".into(),
        algorithm: countersign_core::operation::SigningAlgorithm::Ed25519,
        public_key: Some(example().public_key),
        hmac_salt: None,
        scopes: [countersign_core::operation::Scope::Withdraw].into(),
        ip_allowlist: vec!["127.0.0.1/32".into()],
        max_reference_value: None,
        created_at: gw.now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        last_used_ip: None,
    };
    gw.state.store.insert_api_key(&doc_key, gw.now()).await.unwrap();
    let r = gw
        .http
        .post(format!("{}/v1/withdrawals", gw.base))
        .header("CS-Key", "key_doc")
        .header("CS-Timestamp", TIMESTAMP.to_string())
        .header("CS-Nonce", NONCE)
        .header("CS-Signature", example().ed25519)
        .header("Idempotency-Key", IDEMPOTENCY_KEY)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}
