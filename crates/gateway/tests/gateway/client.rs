//! `countersign-client` against a real gateway over HTTPS with a pinned key:
//! enrollment from a link, login, verified operations, decisions, live events, and
//! the refusals (wrong pin, operations altered in transit, gateway down).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use countersign_client::{Client, EnrollmentLink, Error, Update};
use countersign_core::Decision;
use serde_json::Value;

use crate::support::*;

pub async fn approvers_enroll_and_approve_through_the_client_over_pinned_https(db: Db) {
    let gw = Gateway::start_tls(db).await;
    let (alice_client, alice, alice_key) = approver(&gw, "alice").await;
    let (carol_client, carol, carol_key) = approver(&gw, "carol").await;
    let mut events = alice_client.events(&alice, None);

    let key = gw.api_key("key_cli1", KeySpec::default()).await;
    let id = gw.withdraw(&key, &eth("12.5")).await.op_id();

    // The approver sees it live, then in the verified pending list.
    let pushed = loop {
        match events.recv().await.unwrap() {
            Update::Event(e) if e.event == "operation.pending" => break e,
            Update::Event(_) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(pushed.data["operation"], id, "{pushed:?}");
    let pending = alice_client.pending(&alice).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].operation.id.to_string(), id);
    assert_eq!(pending[0].fingerprint.len(), 19, "XXXX-XXXX-XXXX-XXXX");

    let challenge = alice_client.challenge(&alice, &id, Decision::Approve).await.unwrap();
    let r = alice_client.sign_decision(&alice, challenge, None, alice_key, &ceremony()).await.unwrap();
    assert_eq!(r["state"], "pending");
    let challenge = carol_client.challenge(&carol, &id, Decision::Approve).await.unwrap();
    let r =
        carol_client.sign_decision(&carol, challenge, None, carol_key.clone(), &ceremony()).await.unwrap();
    assert_eq!(r["state"], "released");

    // Decided already: the gateway's own error code comes through.
    let err = carol_client.challenge(&carol, &id, Decision::Approve).await.unwrap_err();
    assert!(matches!(err, Error::Gateway { .. }), "{err:?}");
    assert!(err.code().starts_with("decision."), "{err:?}");

    // Freeze with a touch.
    assert!(carol_client.freeze(&carol, "drill", carol_key, &ceremony()).await.unwrap());
    assert_eq!(gw.withdraw(&key, &eth("0.1")).await.code(), "auth.frozen");
}

pub async fn a_gateway_with_another_key_is_refused_before_anything_is_sent(db: Db) {
    let gw = Gateway::start_tls(db).await;
    let good = EnrollmentLink::parse(&link(&gw, "alice").await).unwrap();
    let mut forged = good.clone();
    forged.pin = Some("sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    let err = Client::for_link(&forged)
        .unwrap()
        .enroll(&forged.code, "k", soft_key(), &ceremony())
        .await
        .unwrap_err();
    match &err {
        Error::PinMismatch { expected, actual } => {
            assert_eq!(expected, forged.pin.as_deref().unwrap());
            assert_eq!(Some(actual.as_str()), good.pin.as_deref(), "names the key it saw");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.code(), "client.pin_mismatch");
    // The code was never sent, so it still works with the right pin.
    let enrolled =
        Client::for_link(&good).unwrap().enroll(&good.code, "k", soft_key(), &ceremony()).await.unwrap();
    assert_eq!(enrolled.status, "active");
}

/// A man in the middle (a plain-HTTP proxy on this machine) that rewrites decision
/// challenges with `rewrite`.
async fn proxy(gateway: String, rewrite: fn(&mut Value)) -> String {
    #[derive(Clone)]
    struct P {
        gateway: String,
        http: reqwest::Client,
        rewrite: fn(&mut Value),
    }
    async fn forward(
        State(p): State<P>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        let mut req = p.http.request(method, format!("{}{}", p.gateway, uri));
        for (k, v) in &headers {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status();
        let mut json: Value = resp.json().await.unwrap_or(Value::Null);
        if uri.path().ends_with("/challenge") {
            (p.rewrite)(&mut json);
        }
        (status, axum::Json(json)).into_response()
    }
    use axum::response::IntoResponse;
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let app = axum::Router::new().fallback(forward).with_state(P { gateway, http, rewrite });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

pub async fn operations_altered_in_transit_are_refused_before_signing(db: Db) {
    let gw = Gateway::start_tls(db).await;
    let (_, alice, alice_key) = approver(&gw, "alice").await;
    let key = gw.api_key("key_cli2", KeySpec::default()).await;
    let id = gw.withdraw(&key, &eth("12.5")).await.op_id();

    // Amount changed only where a UI would read it.
    let shown_only = proxy(gw.base.clone(), |v| {
        v["operation"]["operation"]["action"]["amount"] = Value::from("1.25");
    })
    .await;
    // Amount changed in the canonical bytes too (and the digest left as it was).
    let canonical_too = proxy(gw.base.clone(), |v| {
        let c = v["operation"]["canonical"].as_str().unwrap().replace("\"12.5\"", "\"1.25\"");
        v["operation"]["canonical"] = Value::from(c);
        v["operation"]["operation"]["action"]["amount"] = Value::from("1.25");
    })
    .await;
    // Everything recomputed consistently for 1.25 would need the canonical digest
    // the key signs to match the gateway's: the gateway then refuses the signature
    // (demo step 5 and tests/gateway/approvals.rs cover that side).
    for base in [shown_only, canonical_too] {
        let mitm = Client::new(&base, None).unwrap();
        let err = mitm.challenge(&alice, &id, Decision::Approve).await.unwrap_err();
        assert_eq!(err.code(), "client.tampered", "{err:?}");
    }
    assert_eq!(alice_key.counter(), 2, "the key signed nothing (enrollment and login only)");
}

pub async fn an_unreachable_gateway_is_a_clear_error(_db: Db) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Client::new(&format!("http://{addr}"), None).unwrap().info().await.unwrap_err();
    assert_eq!(err.code(), "client.unreachable", "{err:?}");
}
