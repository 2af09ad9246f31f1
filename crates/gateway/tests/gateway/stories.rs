//! The stories, each run on both backends by `both!` in main.rs.

use std::collections::BTreeSet;

use countersign_core::audit::verify_export;
use countersign_core::operation::{Destination, Scope, SigningAlgorithm};
use countersign_core::policy::Breach;
use serde_json::json;

use crate::support::*;

pub async fn small_withdrawal_is_released_once_with_a_signed_release(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let r = gw.withdraw(&key, &eth("1.5")).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.state(), "released");
    assert_eq!(r.body["operation"]["action"]["details"]["reference_value"]["amount"], "4500");
    assert_eq!(r.body["operation"]["initiator"]["owner"], "bob");
    assert_eq!(r.body["operation"]["initiator"]["source_ip"], "127.0.0.1");
    assert_eq!(r.body["verdict"]["verdict"], "allow");

    // Exactly one ledger row, with a release signature that verifies with the gateway key.
    let ledger = gw.state.store.ledger().await.unwrap();
    assert_eq!(ledger.len(), 1);
    let cert = &ledger[0].certificate;
    assert_eq!(ledger[0].operation_id, r.op_id());
    assert_eq!(cert["basis"], "allowed_by_policy");
    let mut unsigned = cert.clone();
    let sig = unsigned.as_object_mut().unwrap().remove("signature").unwrap();
    let mut msg = b"countersign:release:v1\0".to_vec();
    msg.extend(countersign_core::canonical::jcs(&unsigned).unwrap());
    let sig = data_encoding::BASE64URL_NOPAD.decode(sig.as_str().unwrap().as_bytes()).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&sig.try_into().unwrap());
    gw.state.keys.verifying_key().verify_strict(&msg, &sig).unwrap();
    // The canonical operation in the document decodes strictly and is the one answered.
    let op = countersign_core::canonical::decode(cert["operation"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(op.id.as_str(), r.op_id());

    let events = gw.audit_events().await;
    assert!(events.ends_with(&["operation.received".into(), "operation.released".into()]), "{events:?}");
}

pub async fn large_withdrawal_is_held_with_quorum_expiry_and_fingerprint(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let r = gw.withdraw(&key, &eth("4")).await; // $12,000
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.state(), "pending");
    assert_eq!(r.body["verdict"]["quorum"]["groups"], json!([{"group": "traders", "min": 2}]));
    assert_eq!(r.body["verdict"]["reasons"][0], json!({"reason": "amount_tier", "tier": "large"}));
    assert_eq!(r.body["operation"]["expires_at"], "2026-11-28T13:00:00Z");
    // The fingerprint and digest are recomputable from the canonical form returned.
    let canonical = r.body["canonical"].as_str().unwrap();
    let digest = countersign_core::Digest::of_canonical(canonical.as_bytes());
    assert_eq!(r.body["digest"], digest.to_hex());
    assert_eq!(r.body["fingerprint"], digest.fingerprint().to_string());
    assert!(gw.state.store.ledger().await.unwrap().is_empty(), "nothing held is released");
    assert!(gw.audit_events().await.contains(&"operation.pending".to_string()));
}

pub async fn sanctioned_destination_is_denied_and_stored(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let r = gw.withdraw(&key, &eth_to("1", "0x000000000000000000000000000000000000dEaD")).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.code(), "policy.denied");
    assert_eq!(r.state(), "denied");
    assert_eq!(r.body["verdict"]["reason"], json!({"reason": "rule", "message": "sanctioned address"}));
    let stored = gw.state.store.operation(&r.op_id()).await.unwrap().unwrap();
    assert_eq!(stored.state.as_str(), "denied");
    assert!(gw.state.store.ledger().await.unwrap().is_empty());
    assert!(gw.audit_events().await.contains(&"operation.denied".to_string()));
}

pub async fn idempotency_replays_and_conflicts(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let first = gw.withdraw_idem(&key, &eth("1"), "order-42").await;
    assert_eq!(first.status, 201);
    let again = gw.withdraw_idem(&key, &eth("1"), "order-42").await;
    assert_eq!(again.status, 201);
    assert_eq!(again.op_id(), first.op_id());
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = gw.withdraw_idem(&key, &eth("2"), "order-42").await;
    assert_eq!(other.status, 409);
    assert_eq!(other.code(), "request.idempotency_conflict");
    assert_eq!(gw.operation_count().await, 1);
    assert_eq!(gw.state.store.ledger().await.unwrap().len(), 1, "released once");
    // Another key may use the same idempotency key for its own request.
    let key2 = gw.api_key("key_mm2", KeySpec::default()).await;
    assert_eq!(gw.withdraw_idem(&key2, &eth("1"), "order-42").await.status, 201);
}

pub async fn concurrent_duplicates_create_one_operation(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let replies = futures_join(&gw, &key, 8).await;
    let ids: BTreeSet<String> = replies.iter().map(|r| r.op_id()).collect();
    assert_eq!(ids.len(), 1, "{replies:?}");
    assert!(replies.iter().all(|r| r.status == 201));
    assert_eq!(gw.operation_count().await, 1);
    assert_eq!(gw.state.store.ledger().await.unwrap().len(), 1);
}

async fn futures_join(gw: &Gateway, key: &TestKey, n: usize) -> Vec<Reply> {
    let body = serde_json::to_vec(&eth("1")).unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let req = gw.request(
            key,
            "POST",
            "/v1/withdrawals",
            &body,
            gw.now().unix(),
            &Gateway::fresh_nonce(),
            &[("Idempotency-Key", "same-order")],
        );
        set.spawn(async move { Reply::from(req.send().await.unwrap()).await });
    }
    set.join_all().await
}

pub async fn every_bad_input_has_its_code_and_changes_nothing(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    // A first authenticated call records the key's first source address (audited).
    assert_eq!(gw.send(&key, "GET", "/v1/operations", b"", &[]).await.status, 200);
    let events_before = gw.audit_events().await.len();
    let cases: Vec<(&str, Vec<u8>, &str, u16)> = vec![
        ("malformed JSON", b"{\"account\":".to_vec(), "request.malformed_json", 400),
        (
            "unknown field",
            body(
                json!({"account":"acct_main","asset":"ETH","network":"ethereum","amount":"1","destination":{"address":"0x8ba1f109551bD432803012645Ac136ddd64DBA72"},"fee":"0"}),
            ),
            "request.invalid_body",
            400,
        ),
        (
            "amount as a number",
            body(
                json!({"account":"acct_main","asset":"ETH","network":"ethereum","amount":1,"destination":{"address":"0x8ba1f109551bD432803012645Ac136ddd64DBA72"}}),
            ),
            "request.invalid_body",
            400,
        ),
        ("negative amount", body(eth("-1")), "request.bad_amount", 400),
        ("exponent amount", body(eth("1e3")), "request.bad_amount", 400),
        ("zero amount", body(eth("0")), "request.zero_amount", 400),
        (
            "over-precise amount",
            body(
                json!({"account":"acct_main","asset":"USDC","network":"ethereum","amount":"1.0000001","destination":{"address":"0x8ba1f109551bD432803012645Ac136ddd64DBA72"}}),
            ),
            "request.amount_precision",
            400,
        ),
        (
            "unknown asset",
            body(
                json!({"account":"acct_main","asset":"DOGE","network":"ethereum","amount":"1","destination":{"address":"0x8ba1f109551bD432803012645Ac136ddd64DBA72"}}),
            ),
            "request.unknown_asset",
            400,
        ),
        (
            "asset on the wrong network",
            body(
                json!({"account":"acct_main","asset":"ETH","network":"xrpl","amount":"1","destination":{"address":"rPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY"}}),
            ),
            "request.unknown_asset",
            400,
        ),
        (
            "bad EIP-55 checksum",
            body(eth_to("1", "0x8ba1f109551bD432803012645Ac136ddd64DBa72")),
            "request.bad_address",
            400,
        ),
        (
            "bitcoin address on ethereum",
            body(eth_to("1", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")),
            "request.bad_address",
            400,
        ),
        (
            "XRP without a destination tag",
            body(
                json!({"account":"acct_main","asset":"XRP","network":"xrpl","amount":"10","destination":{"address":"rPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY"}}),
            ),
            "request.bad_memo",
            400,
        ),
        (
            "memo on ethereum",
            body(
                json!({"account":"acct_main","asset":"ETH","network":"ethereum","amount":"1","destination":{"address":"0x8ba1f109551bD432803012645Ac136ddd64DBA72","memo":"1"}}),
            ),
            "request.bad_memo",
            400,
        ),
        (
            "account with a space",
            body(
                json!({"account":"acct main","asset":"ETH","network":"ethereum","amount":"1","destination":{"address":"0x8ba1f109551bD432803012645Ac136ddd64DBA72"}}),
            ),
            "request.invalid_field",
            400,
        ),
        ("oversize body", vec![b' '; 70 * 1024], "request.too_large", 413),
    ];
    for (name, bytes, code, status) in cases {
        let r = gw.send(&key, "POST", "/v1/withdrawals", &bytes, &[("Idempotency-Key", "k1")]).await;
        assert_eq!((r.status, r.code()), (status, code), "{name}: {:?}", r.body);
    }
    let r = gw.send(&key, "POST", "/v1/withdrawals", &body(eth("1")), &[]).await;
    assert_eq!((r.status, r.code()), (400, "request.missing_idempotency_key"));
    let r =
        gw.send(&key, "POST", "/v1/withdrawals", &body(eth("1")), &[("Idempotency-Key", "has space")]).await;
    assert_eq!((r.status, r.code()), (400, "request.bad_idempotency_key"));
    assert_eq!(gw.operation_count().await, 0, "no bad input stored anything");
    assert_eq!(
        gw.audit_events().await.len(),
        events_before,
        "bad input by a valid key is not a security event"
    );
    // And the key still works afterwards.
    assert_eq!(gw.withdraw(&key, &eth("1")).await.status, 201);
}

fn body(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

pub async fn every_auth_failure_has_its_code_and_known_keys_are_audited(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let b = body(eth("1"));
    let idem = [("Idempotency-Key", "k")];

    // Missing and malformed headers.
    let r = gw.http.post(format!("{}/v1/withdrawals", gw.base)).body(b.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["code"], "auth.missing_header");
    let now = gw.now().unix();
    let r = gw.send_signed(&key, "POST", "/v1/withdrawals", &b, now, "short", &idem).await;
    assert_eq!((r.status, r.code()), (401, "auth.malformed_header"));

    // Unknown key: answered as a wrong signature, so key ids cannot be enumerated.
    let ghost = TestKey {
        id: "key_ghost".into(),
        secret: Secret::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[1; 32])),
    };
    let r = gw.withdraw(&ghost, &eth("1")).await;
    assert_eq!((r.status, r.code()), (401, "auth.bad_signature"));

    // A signature by another key, and a signature over another body.
    let impostor = TestKey {
        id: "key_mm1".into(),
        secret: Secret::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[2; 32])),
    };
    assert_eq!(gw.withdraw(&impostor, &eth("1")).await.code(), "auth.bad_signature");
    let sig_for_small =
        key.sign("POST", "/v1/withdrawals", "", now, "nonce-aaaaaaaaaaaaaaaa", "k", &body(eth("1")));
    let r = gw
        .http
        .post(format!("{}/v1/withdrawals", gw.base))
        .header("CS-Key", "key_mm1")
        .header("CS-Timestamp", now.to_string())
        .header("CS-Nonce", "nonce-aaaaaaaaaaaaaaaa")
        .header("CS-Signature", sig_for_small)
        .header("Idempotency-Key", "k")
        .body(body(eth("100")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a signature does not carry over to another body");

    // Stale timestamps either side of the ±30 s window; the edge itself passes.
    let r =
        gw.send_signed(&key, "POST", "/v1/withdrawals", &b, now - 31, "nonce-bbbbbbbbbbbbbbbb", &idem).await;
    assert_eq!(r.code(), "auth.stale_timestamp");
    let r =
        gw.send_signed(&key, "POST", "/v1/withdrawals", &b, now + 31, "nonce-cccccccccccccccc", &idem).await;
    assert_eq!(r.code(), "auth.stale_timestamp");
    let r = gw
        .send_signed(
            &key,
            "POST",
            "/v1/withdrawals",
            &b,
            now - 30,
            "nonce-dddddddddddddddd",
            &[("Idempotency-Key", "edge")],
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // Replayed nonce.
    let r = gw
        .send_signed(
            &key,
            "POST",
            "/v1/withdrawals",
            &b,
            now,
            "nonce-dddddddddddddddd",
            &[("Idempotency-Key", "edge")],
        )
        .await;
    assert_eq!(r.code(), "auth.replayed_nonce");

    // Scope, IP allowlist, expiry, revocation, freeze.
    let reader = gw
        .api_key("key_reader", KeySpec { scopes: BTreeSet::from([Scope::Read]), ..KeySpec::default() })
        .await;
    assert_eq!(gw.withdraw(&reader, &eth("1")).await.code(), "auth.scope_missing");
    let elsewhere =
        gw.api_key("key_fra", KeySpec { allow: vec!["198.51.100.0/24"], ..KeySpec::default() }).await;
    assert_eq!(gw.withdraw(&elsewhere, &eth("1")).await.code(), "auth.ip_not_allowed");
    let nowhere = gw.api_key("key_none", KeySpec { allow: vec![], ..KeySpec::default() }).await;
    assert_eq!(gw.withdraw(&nowhere, &eth("1")).await.code(), "auth.ip_not_allowed");
    let expiring = gw
        .api_key("key_exp", KeySpec { expires_at: Some(gw.now().plus_seconds(60)), ..KeySpec::default() })
        .await;
    assert_eq!(gw.withdraw(&expiring, &eth("1")).await.status, 201);
    gw.clock.advance(60);
    assert_eq!(gw.withdraw(&expiring, &eth("1")).await.code(), "auth.key_expired");
    assert!(gw.state.store.revoke_api_key("key_mm1", "host", gw.now()).await.unwrap());
    assert_eq!(gw.withdraw(&key, &eth("1")).await.code(), "auth.key_revoked");
    let other = gw.api_key("key_mm3", KeySpec::default()).await;
    assert!(gw.state.store.freeze("host", "incident drill", gw.now()).await.unwrap());
    let r = gw.withdraw(&other, &eth("1")).await;
    assert_eq!((r.status, r.code()), (403, "auth.frozen"));

    // Refusals of known keys are in the audit chain with their codes.
    let entries = gw.state.store.audit_events().await.unwrap();
    let refused: Vec<String> = entries
        .iter()
        .filter(|e| e.event == "auth.refused")
        .map(|e| e.details["code"].as_str().unwrap().to_owned())
        .collect();
    for code in [
        "auth.bad_signature",
        "auth.replayed_nonce",
        "auth.scope_missing",
        "auth.ip_not_allowed",
        "auth.key_expired",
        "auth.key_revoked",
        "auth.frozen",
    ] {
        assert!(refused.iter().any(|c| c == code), "{code} not audited: {refused:?}");
    }
    assert!(entries.iter().any(|e| e.event == "freeze.on"));
    assert!(entries.iter().any(|e| e.event == "api_key.revoked"));
}

pub async fn hmac_keys_work_and_secrets_are_not_stored(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw
        .api_key("key_hmac", KeySpec { algorithm: SigningAlgorithm::HmacSha256, ..KeySpec::default() })
        .await;
    assert_eq!(gw.withdraw(&key, &eth("1")).await.status, 201);
    let wrong = TestKey { id: "key_hmac".into(), secret: Secret::Hmac([9; 32]) };
    assert_eq!(gw.withdraw(&wrong, &eth("1")).await.code(), "auth.bad_signature");
    // The secret appears nowhere in the database.
    let Secret::Hmac(secret) = key.secret else { unreachable!() };
    let b64 = data_encoding::BASE64URL_NOPAD.encode(&secret);
    let hex = data_encoding::HEXLOWER.encode(&secret);
    let record = gw.state.store.api_key("key_hmac").await.unwrap().unwrap();
    let dump = format!("{record:?}{}", gw.state.store.audit_export().await.unwrap());
    assert!(!dump.contains(&b64) && !dump.contains(&hex));
}

pub async fn pending_operations_expire_and_are_never_released(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let r = gw.withdraw(&key, &eth("5")).await;
    assert_eq!(r.state(), "pending");
    gw.clock.advance(3599);
    assert_eq!(countersign_gateway::sweep::sweep_once(&gw.state, gw.now()).await.unwrap(), 0);
    gw.clock.advance(1); // exactly expires_at
    assert_eq!(countersign_gateway::sweep::sweep_once(&gw.state, gw.now()).await.unwrap(), 1);
    let stored = gw.state.store.operation(&r.op_id()).await.unwrap().unwrap();
    assert_eq!(stored.state.as_str(), "expired");
    // An expired operation cannot move to released, not even by a racing instance.
    let id = stored.operation.id.clone();
    let event = countersign_gateway::store::AuditEvent::new("test", "operation.released");
    let cert = json!({});
    let moved = gw
        .state
        .store
        .transition(
            &id,
            countersign_gateway::store::OpState::Pending,
            countersign_gateway::store::OpState::Released,
            Some(&countersign_gateway::store::Release { document: &cert, action: None }),
            &event,
            gw.now(),
        )
        .await
        .unwrap();
    assert!(!moved);
    assert!(gw.state.store.ledger().await.unwrap().is_empty());
    // A second sweep finds nothing more.
    assert_eq!(countersign_gateway::sweep::sweep_once(&gw.state, gw.now()).await.unwrap(), 0);
    assert_eq!(gw.audit_events().await.iter().filter(|e| *e == "operation.expired").count(), 1);
}

pub async fn initiators_read_only_their_own_operations_page_by_page(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let other = gw.api_key("key_mm2", KeySpec::default()).await;
    let mut mine = Vec::new();
    for i in 0..5 {
        gw.clock.advance(1);
        let amount = if i % 2 == 0 { "0.1" } else { "4" }; // released, pending, ... ($24,900 in all)
        mine.push(gw.withdraw(&key, &eth(amount)).await.op_id());
    }
    let theirs = gw.withdraw(&other, &eth("1")).await.op_id();

    let r = gw.send(&key, "GET", &format!("/v1/operations/{}", mine[0]), b"", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.op_id(), mine[0]);
    let r = gw.send(&key, "GET", &format!("/v1/operations/{theirs}"), b"", &[]).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));

    // Two pages of two, then the last one; newest first; never another key's.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/operations?limit=2&cursor={c}"),
            None => "/v1/operations?limit=2".to_owned(),
        };
        let r = gw.send(&key, "GET", &q, b"", &[]).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        for op in r.body["operations"].as_array().unwrap() {
            seen.push(op["operation"]["id"].as_str().unwrap().to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut expected = mine.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let r = gw.send(&key, "GET", "/v1/operations?state=pending", b"", &[]).await;
    let pending: Vec<&str> =
        r.body["operations"].as_array().unwrap().iter().map(|o| o["state"].as_str().unwrap()).collect();
    assert_eq!(pending, vec!["pending", "pending"]);
    for (q, code) in [
        ("/v1/operations?state=lost", "request.bad_state"),
        ("/v1/operations?limit=0", "request.bad_query"),
        ("/v1/operations?cursor=bm9wZQ", "request.bad_cursor"),
        ("/v1/operations?color=red", "request.bad_query"),
    ] {
        let r = gw.send(&key, "GET", q, b"", &[]).await;
        assert_eq!((r.status, r.code()), (400, code), "{q}");
    }
    // A read-only key may read but not withdraw (checked in the auth story).
    let reader = gw
        .api_key("key_reader", KeySpec { scopes: BTreeSet::from([Scope::Read]), ..KeySpec::default() })
        .await;
    assert_eq!(gw.send(&reader, "GET", "/v1/operations", b"", &[]).await.status, 200);
    let writer = gw
        .api_key("key_writer", KeySpec { scopes: BTreeSet::from([Scope::Withdraw]), ..KeySpec::default() })
        .await;
    assert_eq!(gw.send(&writer, "GET", "/v1/operations", b"", &[]).await.code(), "auth.scope_missing");
}

pub async fn allowlist_cool_off_holds_new_destinations(db: Db) {
    let mut p = policy();
    p.allowlist.enforced = true;
    p.allowlist.on_breach = Breach::RequireApproval;
    let gw = Gateway::start_with(db, p).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let dest = "0x8ba1f109551bD432803012645Ac136ddd64DBA72";
    let r = gw.withdraw(&key, &eth("1")).await;
    assert_eq!(r.state(), "pending");
    assert_eq!(r.body["verdict"]["reasons"][0]["reason"], "destination_not_allowlisted");
    let account = "acct_main".parse().unwrap();
    let network = "ethereum".parse().unwrap();
    assert!(
        gw.state
            .store
            .add_allowlist(
                &account,
                &network,
                &Destination { address: dest.into(), memo: None },
                "desk wallet",
                "host",
                gw.now()
            )
            .await
            .unwrap()
    );
    let r = gw.withdraw(&key, &eth("1")).await;
    assert_eq!(r.body["verdict"]["reasons"][0]["reason"], "destination_cooling_off");
    gw.clock.advance(86_400);
    assert_eq!(gw.withdraw(&key, &eth("1")).await.state(), "released");
}

/// Nov 2023: attackers held every API key of an account (secrets and an allowed IP)
/// and withdrew directly. Here they try large withdrawals and a stream of small ones.
pub async fn the_stolen_api_keys_incident_is_contained(db: Db) {
    let gw = Gateway::start(db).await;
    let keys = [
        gw.api_key("key_hot1", KeySpec::default()).await,
        gw.api_key("key_hot2", KeySpec { algorithm: SigningAlgorithm::HmacSha256, ..KeySpec::default() })
            .await,
        gw.api_key("key_hot3", KeySpec::default()).await,
    ];
    let attacker = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

    // 1. A stream of $2,400 withdrawals, round-robin over the keys, one every 10 s.
    let mut released = 0u32;
    let mut held = 0u32;
    for i in 0..90 {
        gw.clock.advance(10);
        let r = gw.withdraw(&keys[i % 3], &eth_to("0.8", attacker)).await;
        match r.state() {
            "released" => released += 1,
            "pending" => {
                held += 1;
                let reasons = r.body["verdict"]["reasons"].to_string();
                assert!(reasons.contains("velocity_exceeded"), "{reasons}");
            }
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    // 2. Large withdrawals with every key: each key already has 20 operations waiting
    //    for approvers, so more are refused outright (push-fatigue limit) and audited.
    for k in &keys {
        let r = gw.withdraw(k, &eth_to("1000", attacker)).await; // $3,000,000
        assert_eq!((r.status, r.code()), (429, "intake.too_many_pending"), "{:?}", r.body);
    }
    // Per key $25,000/h: at most 10 × $2,400 per key per hour, so 30 released in the
    // 15 minutes (the account's $100,000/day would stop the total at 41).
    let ledger = gw.state.store.ledger().await.unwrap();
    assert_eq!(ledger.len() as u32, released);
    let total: f64 = released as f64 * 2400.0;
    assert!(total <= 75_000.0, "released ${total}");
    assert_eq!(released, 30, "each key stops at its hourly budget");
    assert_eq!(held, 60);
    // Nothing above the threshold was released.
    for entry in &ledger {
        let op =
            countersign_core::canonical::decode(entry.certificate["operation"].as_str().unwrap().as_bytes())
                .unwrap();
        assert!(op.withdrawal().unwrap().reference_value.amount < amt("10000"));
    }
    // 3. Risk signals fired on every held withdrawal (velocity budget, new destination...).
    let pending = gw
        .state
        .store
        .operations(
            &countersign_gateway::store::OperationFilter {
                state: Some(countersign_gateway::store::OpState::Pending),
                ..Default::default()
            },
            500,
        )
        .await
        .unwrap();
    assert!(pending.iter().all(|p| p.risk.as_ref().unwrap()["score"].as_u64().unwrap() > 0));
    // 4. Break glass: one freeze stops every key.
    assert!(gw.state.store.freeze("host", "suspected key theft", gw.now()).await.unwrap());
    for k in &keys {
        assert_eq!(gw.withdraw(k, &eth_to("0.1", attacker)).await.code(), "auth.frozen");
    }
    // 5. The audit chain shows it all and verifies.
    let export = gw.state.store.audit_export().await.unwrap();
    let summary = verify_export(&export, &gw.state.keys.verifying_key()).unwrap();
    let events = gw.audit_events().await;
    assert_eq!(events.iter().filter(|e| *e == "operation.released").count() as u32, released);
    assert_eq!(events.iter().filter(|e| *e == "operation.pending").count() as u32, held);
    assert_eq!(events.iter().filter(|e| *e == "intake.rate_limited").count(), 3);
    assert!(events.contains(&"freeze.on".to_string()));
    assert_eq!(events.iter().filter(|e| *e == "auth.refused").count(), 3);
    assert_eq!(summary.entries as usize, events.len());
}

pub async fn audit_chain_exports_and_verifies_and_names_tampering(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    for amount in ["1", "5", "1"] {
        gw.withdraw(&key, &eth(amount)).await;
    }
    let signed = gw.state.store.checkpoint_if_due(gw.state.keys.signing_key(), 0, gw.now()).await.unwrap();
    assert!(signed.is_some());
    gw.withdraw(&key, &eth("1")).await;
    let export = gw.state.store.audit_export().await.unwrap();
    let s = verify_export(&export, &gw.state.keys.verifying_key()).unwrap();
    assert_eq!(s.checkpoints, 1);
    assert_eq!(s.unsigned_tail, 2, "one withdrawal after the checkpoint: received + released");

    // Edit the amount recorded in entry 3's details: the verifier names entry 3.
    let tampered: Vec<String> =
        export
            .lines()
            .map(|l| {
                if l.contains("\"seq\":3,") { l.replacen("api_key:key_mm1", "host", 1) } else { l.to_owned() }
            })
            .collect();
    let err = verify_export(&tampered.join("\n"), &gw.state.keys.verifying_key()).unwrap_err();
    assert_eq!(err.first_broken_seq(), Some(3), "{err}");
}

pub async fn health_metrics_and_openapi_match_the_routes(db: Db) {
    let gw = Gateway::start(db).await;
    let r = gw.http.get(format!("{}/healthz", gw.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    gw.withdraw(&key, &eth("1")).await;
    gw.withdraw(&key, &eth("0")).await;
    let metrics = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("countersign_withdrawals_total{outcome=\"released\"} 1"), "{metrics}");
    assert!(metrics.contains("countersign_refusals_total{code=\"request.zero_amount\"} 1"), "{metrics}");
    let doc: serde_json::Value =
        gw.http.get(format!("{}/openapi.json", gw.base)).send().await.unwrap().json().await.unwrap();
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let served: BTreeSet<String> = [
        "/v1/withdrawals",
        "/v1/operations",
        "/v1/operations/{id}",
        "/v1/enroll/start",
        "/v1/enroll/finish",
        "/v1/login/start",
        "/v1/login/finish",
        "/v1/approver/operations",
        "/v1/operations/{id}/challenge",
        "/v1/operations/{id}/decisions",
        "/v1/registry",
        "/v1/authority",
        "/v1/authority/links",
        "/v1/authority/genesis",
        "/v1/authority/genesis/signatures",
        "/v1/events",
        "/v1/freeze/challenge",
        "/v1/freeze",
        "/v1/admin/operations",
        "/v1/admin/enrollment-codes",
        "/v1/admin/approvers",
        "/v1/admin/api-keys",
        "/v1/admin/api-keys/{id}/revoke",
        "/v1/policy",
        "/v1/admin/audit",
        "/v1/info",
        "/healthz",
        "/metrics",
        "/openapi.json",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(documented, served);
    // Every documented path answers something other than 404/405 for its method.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = format!("{}{}", gw.base, path.replace("{id}", "op_x"));
            let r = gw.http.request(method.to_uppercase().parse().unwrap(), url).send().await.unwrap();
            assert!(![404, 405].contains(&r.status().as_u16()), "{method} {path}: {}", r.status());
        }
    }
}

pub async fn settlement_webhook_is_retried_until_acknowledged(db: Db) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let r = gw.withdraw(&key, &eth("1")).await;
    assert_eq!(r.state(), "released");

    // Settlement: fails twice, then verifies the document independently and accepts.
    let calls = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let trusted = gw.state.keys.verifying_key();
    let trusted_policy = policy();
    let registry = countersign_core::certificate::Registry {
        version: 1,
        rp_id: "countersign.example".into(),
        origins: vec![],
        issued_at: gw.now(),
        approvers: vec![],
    };
    let (c, a) = (calls.clone(), accepted.clone());
    let app = axum::Router::new().route(
        "/settle",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (c, a) = (c.clone(), a.clone());
            let (trusted_policy, registry) = (trusted_policy.clone(), registry.clone());
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < 2 {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let trust = countersign_core::release::Trust {
                    gateway: &trusted,
                    policy: &trusted_policy,
                    registry: &registry,
                };
                match countersign_core::release::verify_release(&body, &trust) {
                    Ok(op) => {
                        a.lock().unwrap().push(op.id.as_str().to_owned());
                        axum::http::StatusCode::OK
                    }
                    Err(_) => axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/settle", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = countersign_gateway::release::http_client(std::time::Duration::from_secs(5)).unwrap();
    let deliver = || countersign_gateway::release::deliver_once(&gw.state, &client, &url, gw.now());

    assert_eq!(deliver().await.unwrap(), 0); // attempt 1: 503
    assert_eq!(deliver().await.unwrap(), 0); // not due yet: no call
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    gw.clock.advance(2);
    assert_eq!(deliver().await.unwrap(), 0); // attempt 2: 503, next in 4 s
    gw.clock.advance(3);
    assert_eq!(deliver().await.unwrap(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    gw.clock.advance(1);
    assert_eq!(deliver().await.unwrap(), 1); // attempt 3: verified and accepted
    assert_eq!(*accepted.lock().unwrap(), vec![r.op_id()]);
    gw.clock.advance(600);
    assert_eq!(deliver().await.unwrap(), 0, "delivered once");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let delivered = gw
        .state
        .store
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event == "settlement.delivered")
        .unwrap();
    assert_eq!(delivered.details["attempts"], 3);

    // An unreachable settlement leaves the row undelivered, to be retried.
    let second = gw.withdraw(&key, &eth("1")).await;
    let nowhere = "http://127.0.0.1:9/settle";
    assert_eq!(
        countersign_gateway::release::deliver_once(&gw.state, &client, nowhere, gw.now()).await.unwrap(),
        0
    );
    let due = gw.state.store.due_deliveries(gw.now().plus_seconds(2), 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.operation_id.clone()).collect::<Vec<_>>(), vec![second.op_id()]);
}

pub async fn unfreezing_is_an_operation_that_needs_the_admin_quorum(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    assert!(gw.state.store.freeze("approver:carol", "suspicious traffic", gw.now()).await.unwrap());
    let proposer = "alice".parse().unwrap();
    let record =
        countersign_gateway::approvers::propose_unfreeze(&gw.state, &proposer, "keys rotated", gw.now())
            .await
            .unwrap();
    assert_eq!(record.state.as_str(), "pending");
    assert_eq!(record.verdict["quorum"]["groups"], json!([{"group": "admins", "min": 2}]));
    assert_eq!(record.verdict["reasons"], json!([{"reason": "admin_operation", "kind": "unfreeze"}]));
    assert_eq!(record.operation.initiator.responsible_person().as_str(), "alice");
    assert_eq!(record.operation.action.kind().as_str(), "unfreeze");
    // Proposing changes nothing yet: keys stay frozen.
    assert!(gw.state.store.freeze_state().await.unwrap().frozen);
    assert_eq!(gw.withdraw(&key, &eth("1")).await.code(), "auth.frozen");
}

/// A thief firing many small withdrawals at once cannot overspend the velocity
/// budget: intake for one key and account is serialised (advisory locks on
/// PostgreSQL, the single writer on SQLite).
pub async fn concurrent_small_withdrawals_cannot_overspend_the_budget(db: Db) {
    let gw = Gateway::start(db).await;
    gw.api_key("key_mm1", KeySpec::default()).await;
    let record = gw.state.store.api_key("key_mm1").await.unwrap().unwrap();
    let body = serde_json::to_vec(&eth("0.8")).unwrap(); // $2,400; the key's budget is $25,000 per hour
    // Straight into intake (authentication is not what is raced here), all at once.
    let states = submit_at_once(&gw, &record, &body, 24).await;
    let released = states.iter().filter(|s| s.as_str() == "released").count();
    assert_eq!(states.len(), 24);
    assert_eq!(released, 10, "10 × $2,400 fit in $25,000; the 11th must wait for approval: {states:?}");
    assert_eq!(gw.state.store.ledger().await.unwrap().len(), 10);
}

/// Someone who knows a key id (not a secret) cannot flood the audit chain with bad
/// signatures: one entry per key and code per minute; every refusal is still answered.
pub async fn repeated_refusals_are_audited_once_a_minute(db: Db) {
    let gw = Gateway::start(db).await;
    gw.api_key("key_mm1", KeySpec::default()).await;
    let impostor = TestKey {
        id: "key_mm1".into(),
        secret: Secret::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[2; 32])),
    };
    let refused = || async { gw.audit_events().await.iter().filter(|e| *e == "auth.refused").count() };
    for _ in 0..5 {
        assert_eq!(gw.withdraw(&impostor, &eth("1")).await.code(), "auth.bad_signature");
    }
    assert_eq!(refused().await, 1);
    gw.clock.advance(60);
    assert_eq!(gw.withdraw(&impostor, &eth("1")).await.code(), "auth.bad_signature");
    assert_eq!(refused().await, 2);
    let metrics = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("countersign_refusals_total{code=\"auth.bad_signature\"} 6"), "{metrics}");
}

/// Hostile clients at the HTTP level: headers sent too slowly (slowloris), a body
/// sent too slowly, a body too large, and more connections than the gateway serves
/// at once. Each is cut off with a clear answer, and honest requests still go through.
pub async fn slow_and_oversized_clients_are_cut_off(db: Db) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::{Duration, timeout};

    let gw = Gateway::start(db).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut state = gw.state.clone();
    let mut config = (*state.config).clone();
    (config.max_connections, config.header_read_timeout_seconds, config.body_read_timeout_seconds) =
        (4, 1, 1);
    state.config = std::sync::Arc::new(config);
    let limits = countersign_gateway::http::Limits::from_config(&state.config);
    tokio::spawn(countersign_gateway::http::serve_app(listener, countersign_gateway::router(state), limits));
    async fn answer(conn: &mut TcpStream, what: &str) -> String {
        let mut buf = Vec::new();
        let read = timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "{what}: not closed within 5 s; got {:?}", String::from_utf8_lossy(&buf));
        String::from_utf8_lossy(&buf).into_owned()
    }

    // Headers that never finish: the connection is closed.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n").await.unwrap();
    let got = answer(&mut slow, "slow headers").await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");

    // A body that never finishes: 408 with its code.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /v1/withdrawals HTTP/1.1\r\nHost: gateway\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"amount\":",
    )
    .await
    .unwrap();
    let got = answer(&mut slow, "slow body").await;
    assert!(got.starts_with("HTTP/1.1 408") && got.contains("request.body_timeout"), "{got}");

    // A body over max_body_bytes: 413 with its code, nothing read beyond the limit.
    let size = gw.state.config.max_body_bytes + 1;
    let mut big = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/withdrawals HTTP/1.1\r\nHost: gateway\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    big.write_all(head.as_bytes()).await.unwrap();
    big.write_all(&vec![b' '; size]).await.unwrap();
    let got = answer(&mut big, "oversized body").await;
    assert!(got.starts_with("HTTP/1.1 413") && got.contains("request.too_large"), "{got}");

    // Four silent connections take every slot; a fifth client waits in the backlog
    // and is served once the silent ones are cut off.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut honest = TcpStream::connect(addr).await.unwrap();
    honest.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n").await.unwrap();
    let got = answer(&mut honest, "honest client").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    for mut s in silent {
        let got = answer(&mut s, "silent connection").await;
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "a silent connection is cut off: {got}");
    }
}

/// Admission control: with every intake slot taken, a withdrawal is refused at once
/// with `503 intake.busy` and nothing is stored; the same request then goes through.
pub async fn a_full_intake_refuses_at_once_and_stores_nothing(db: Db) {
    let gw = Gateway::start(db).await;
    let key = gw.api_key("key_mm1", KeySpec::default()).await;
    let slots = gw.state.config.max_intake_in_flight;
    let held = gw.state.intake_slots.clone().acquire_many_owned(u32::try_from(slots).unwrap()).await.unwrap();
    let before = gw.operation_count().await;
    let r = gw.withdraw_idem(&key, &eth("1"), "order-busy-1").await;
    assert_eq!((r.status, r.code()), (503, "intake.busy"), "{:?}", r.body);
    assert_eq!(gw.operation_count().await, before);
    drop(held);
    let r = gw.withdraw_idem(&key, &eth("1"), "order-busy-1").await;
    assert_eq!(r.state(), "released", "{:?}", r.body);
}
