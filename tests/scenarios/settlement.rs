//! The exchange's settlement service, as an integrator would write it: an HTTP
//! endpoint that receives release documents from the gateway's webhook and moves
//! funds only for documents that verify offline. Pinned to a genesis hash
//! ([`Settlement::pinned`]), it keeps the authority chain it verified and extends
//! it with the links it has not seen, then checks each release from it; before a
//! deployment has a genesis, it checks against the gateway key, the current signed
//! approver registry and the policy settlement trusts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use countersign_core::authority::{Authority, Link};
use countersign_core::certificate::SignedRegistry;
use countersign_core::release::{Trust, verify_release, verify_release_from_genesis};
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
    /// The pinned genesis hash and the chain verified from it so far.
    chain: Option<(String, Arc<tokio::sync::Mutex<Option<Authority>>>)>,
}

pub struct Settlement {
    url: String,
    sink: Sink,
}

impl Sink {
    /// Verify one document: the registry is fetched fresh (revocations apply at once)
    /// and its signature checked with the gateway key settlement was configured with.
    async fn verify(&self, document: &[u8]) -> Result<String, String> {
        if let Some((pinned, chain)) = &self.chain {
            let mut chain = chain.lock().await;
            match chain.as_mut() {
                None => {
                    let doc = self.get(&format!("{}/v1/authority", self.gateway)).await?;
                    let doc = serde_json::from_value(doc).map_err(|e| e.to_string())?;
                    *chain = Some(Authority::from_document(pinned, &doc).map_err(|e| e.code().to_owned())?);
                }
                Some(held) => {
                    // Only what is new since the head held: each link verified once.
                    let url = format!("{}/v1/authority/links?after={}", self.gateway, held.head().index);
                    let links: Vec<Link> = serde_json::from_value(self.get(&url).await?["links"].clone())
                        .map_err(|e| e.to_string())?;
                    held.extend(&links).map_err(|e| e.code().to_owned())?;
                }
            }
            let held = chain.as_ref().ok_or("no chain")?;
            return verify_release_from_genesis(document, &self.key, held)
                .map(|op| op.id.to_string())
                .map_err(|e| e.code().to_owned());
        }
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

impl Sink {
    async fn get(&self, url: &str) -> Result<Value, String> {
        let r = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        r.json().await.map_err(|e| e.to_string())
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
    /// Before a genesis: the gateway-signed registry (it trusts the gateway).
    pub async fn start(gw: &Gateway) -> Settlement {
        Self::with_chain(gw, None).await
    }

    /// Pinned to the genesis hash the founding people signed.
    pub async fn pinned(gw: &Gateway, genesis: &str) -> Settlement {
        Self::with_chain(gw, Some((genesis.to_owned(), Arc::default()))).await
    }

    async fn with_chain(
        gw: &Gateway,
        chain: Option<(String, Arc<tokio::sync::Mutex<Option<Authority>>>)>,
    ) -> Settlement {
        let sink = Sink {
            gateway: gw.base.clone(),
            key: gw.state.keys.verifying_key(),
            http: gw.http.clone(),
            ledger: Arc::default(),
            chain,
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
