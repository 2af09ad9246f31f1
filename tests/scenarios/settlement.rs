//! The exchange's settlement service, as an integrator would write it: an HTTP
//! endpoint that receives release documents from the gateway's webhook and moves
//! funds only for documents that verify offline against the gateway key, the
//! current signed approver registry and the policy settlement trusts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use countersign_core::certificate::SignedRegistry;
use countersign_core::release::{Trust, verify_release};
use serde_json::Value;

use crate::support::{Gateway, policy};

#[derive(Default)]
struct Ledger {
    /// Operation id → times a valid document for it arrived.
    accepted: BTreeMap<String, u32>,
    refused: Vec<String>,
}

#[derive(Clone)]
struct Sink {
    gateway: String,
    key: ed25519_dalek::VerifyingKey,
    http: reqwest::Client,
    ledger: Arc<Mutex<Ledger>>,
}

pub struct Settlement {
    url: String,
    sink: Sink,
}

impl Sink {
    /// Verify one document: the registry is fetched fresh (revocations apply at once)
    /// and its signature checked with the gateway key settlement was configured with.
    async fn verify(&self, document: &[u8]) -> Result<String, String> {
        let registry: SignedRegistry = self
            .http
            .get(format!("{}/v1/registry", self.gateway))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let registry = registry.verify(&self.key).map_err(|e| e.to_string())?;
        let policy = policy();
        let trust = Trust { gateway: &self.key, policy: &policy, registry };
        verify_release(document, &trust).map(|op| op.id.to_string()).map_err(|e| e.to_string())
    }
}

async fn receive(State(sink): State<Sink>, body: Bytes) -> StatusCode {
    match sink.verify(&body).await {
        Ok(id) => {
            *sink.ledger.lock().unwrap().accepted.entry(id).or_default() += 1;
            StatusCode::OK
        }
        Err(e) => {
            sink.ledger.lock().unwrap().refused.push(e);
            StatusCode::UNPROCESSABLE_ENTITY
        }
    }
}

impl Settlement {
    pub async fn start(gw: &Gateway) -> Settlement {
        let sink = Sink {
            gateway: gw.base.clone(),
            key: gw.state.keys.verifying_key(),
            http: gw.http.clone(),
            ledger: Arc::default(),
        };
        let app = axum::Router::new().route("/settle", axum::routing::post(receive)).with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/settle", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Settlement { url, sink }
    }

    /// One round of the gateway's webhook delivery.
    pub async fn deliver(&self, gw: &Gateway) {
        let http = countersign_gateway::release::http_client(std::time::Duration::from_secs(5)).unwrap();
        countersign_gateway::release::deliver_once(&gw.state, &http, &self.url, gw.now()).await.unwrap();
    }

    /// Operations settled, each asserted to have arrived exactly once.
    pub fn accepted(&self) -> Vec<String> {
        let ledger = self.sink.ledger.lock().unwrap();
        for (id, n) in &ledger.accepted {
            assert_eq!(*n, 1, "{id} settled {n} times");
        }
        ledger.accepted.keys().cloned().collect()
    }

    pub fn refused(&self) -> Vec<String> {
        self.sink.ledger.lock().unwrap().refused.clone()
    }

    /// Verify a document directly (as settlement would on receipt).
    pub async fn verify(&self, _gw: &Gateway, document: &Value) -> Result<String, String> {
        self.sink.verify(&serde_json::to_vec(document).unwrap()).await
    }
}
