//! The demo exchange (feature `demo`): an embedded gateway on loopback and a trading
//! bot that sends realistic, API-key-signed withdrawals. Used by `scripts/demo`
//! (through Countersign Desktop's demo mode) and the terminal walk-through.
//!
//! **Demo only:** the gateway trusts the software authenticator (`development`
//! attestation preset) and serves plain HTTP on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use countersign_core::operation::{Scope, SigningAlgorithm};
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::ApiKeyRecord;
use crate::{AppState, serve};

/// The example configuration, adapted for a demo on this machine: SQLite in
/// `data_dir`, plain HTTP on loopback, software keys trusted, no allowlist, a higher
/// hourly budget so the bot's small withdrawals flow for a while.
///
/// # Errors
/// Only if the example configuration stops parsing (a bug).
pub fn config(data_dir: &std::path::Path) -> Result<Config> {
    let text = include_str!("../../../countersign.example.toml")
        .replace("data_dir = \"data\"", &format!("data_dir = {:?}", data_dir.display()))
        .replace("[tls]\nnames = [\"localhost\", \"127.0.0.1\"]\n", "")
        .replace("approvals.exchange.example", "localhost")
        .replace("attestation_presets = [\"yubikey\"]", "attestation_presets = [\"development\"]")
        .replace("enforced = true", "enforced = false")
        .replace("max_reference_value = \"25000\"", "max_reference_value = \"150000\"")
        .replace("min_score = 70", "min_score = 95");
    Config::from_toml(&text, std::path::Path::new("countersign.example.toml"))
        .map_err(|e| Error::internal(format!("demo configuration: {e}")))
}

/// A running embedded gateway.
#[derive(Debug)]
pub struct Embedded {
    /// Its state (store, keys, configuration).
    pub state: AppState,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

/// Start a gateway on 127.0.0.1 (any free port) with the demo configuration.
///
/// # Errors
/// The data directory or the port cannot be used.
pub async fn start(data_dir: &std::path::Path) -> Result<Embedded> {
    let mut config = config(data_dir)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::internal(format!("listen: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Error::internal(e.to_string()))?;
    config.public_url = Some(format!("http://{addr}"));
    let state = AppState::open(config, Arc::new(SystemClock)).await?;
    let server_state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = serve(server_state, listener).await {
            tracing::error!(error = %e, "embedded gateway stopped");
        }
    });
    Ok(Embedded { state, base: format!("http://{addr}") })
}

/// A trading bot with an Ed25519 API key, signing requests as
/// `docs/api-signing.md` describes.
#[derive(Debug)]
pub struct Bot {
    http: reqwest::Client,
    /// The same bot from another address (127.0.0.2), now and then.
    elsewhere: reqwest::Client,
    base: String,
    key_id: String,
    key: SigningKey,
}

/// Destinations the bot pays: (asset, address).
const KNOWN: &[(&str, &str)] = &[
    ("ETH", "0x8ba1f109551bD432803012645Ac136ddd64DBA72"),
    ("USDC", "0x1aD91ee08f21bE3dE0BA2ba6918E714dA6B45836"),
    ("ETH", "0xdAC17F958D2ee523a2206206994597C13D831ec7"),
];

impl Bot {
    /// Register the bot's API key (owner `bob`, withdraw scope, loopback only, 90
    /// days old so it has a history) and return the bot.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn create(gateway: &Embedded, key_id: &str) -> Result<Bot> {
        let key = SigningKey::from_bytes(&crate::keys::random_bytes::<32>().map_err(Error::internal)?);
        let now = gateway.state.clock.now();
        let record = ApiKeyRecord {
            id: key_id.parse().map_err(Error::internal)?,
            owner: "bob".parse().map_err(Error::internal)?,
            label: "demo market maker".into(),
            algorithm: SigningAlgorithm::Ed25519,
            public_key: Some(BASE64URL_NOPAD.encode(key.verifying_key().as_bytes())),
            hmac_salt: None,
            scopes: [Scope::Read, Scope::Withdraw].into(),
            ip_allowlist: vec!["127.0.0.0/8".into()],
            max_reference_value: None,
            created_at: now.minus_seconds(90 * 86_400),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            last_used_ip: None,
        };
        gateway.state.store.insert_api_key(&record, now).await?;
        let http = crate::release::http_client(Duration::from_secs(10))?;
        let elsewhere = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .map_err(Error::internal)?;
        Ok(Bot { http, elsewhere, base: gateway.base.clone(), key_id: key_id.to_owned(), key })
    }

    /// Send one withdrawal; the gateway's JSON answer.
    ///
    /// # Errors
    /// The gateway cannot be reached.
    pub async fn withdraw(&self, asset: &str, amount: &str, to: &str, order: &str) -> Result<Value> {
        self.withdraw_via(&self.http, asset, amount, to, order).await
    }

    async fn withdraw_via(
        &self,
        http: &reqwest::Client,
        asset: &str,
        amount: &str,
        to: &str,
        order: &str,
    ) -> Result<Value> {
        let body = serde_json::to_vec(&json!({
            "account": "acct_main", "asset": asset, "network": "ethereum", "amount": amount,
            "destination": {"address": to},
        }))
        .map_err(Error::internal)?;
        let ts = SystemClock.now().unix(); // the bot's own clock
        let nonce = HEXLOWER.encode(&crate::keys::random_bytes::<12>().map_err(Error::internal)?);
        let hash = HEXLOWER.encode(&Sha256::digest(&body));
        let msg = format!("countersign-request-v1\nPOST\n/v1/withdrawals\n\n{ts}\n{nonce}\n{order}\n{hash}");
        let sig = BASE64URL_NOPAD.encode(&self.key.sign(msg.as_bytes()).to_bytes());
        let resp = http
            .post(format!("{}/v1/withdrawals", self.base))
            .header("CS-Key", &self.key_id)
            .header("CS-Timestamp", ts.to_string())
            .header("CS-Nonce", nonce)
            .header("CS-Signature", sig)
            .header("Idempotency-Key", order)
            .body(body)
            .send()
            .await
            .map_err(|e| Error::internal(format!("bot: {e}")))?;
        resp.json().await.map_err(|e| Error::internal(format!("bot: {e}")))
    }

    /// The `n`-th order of realistic traffic: mostly small payouts to known
    /// addresses, every fifth one large (held for two traders), every seventh to an
    /// address never paid before (and every ninth is sent from 127.0.0.2, an address
    /// the key has not used: the new-IP risk signal).
    #[must_use]
    pub fn order(n: u64) -> (&'static str, String, String) {
        let (asset, known) = KNOWN[usize::try_from(n % 3).unwrap_or(0)];
        let to = if n % 7 == 3 {
            format!("0x{:0>40}", HEXLOWER.encode(&Sha256::digest(n.to_be_bytes())[..20]))
        } else {
            known.to_owned()
        };
        let amount = match (asset, n % 5 == 4) {
            ("USDC", true) => format!("{}", 15_000 + (n * 7919) % 40_000),
            ("USDC", false) => format!("{}", 50 + (n * 7919) % 1_500),
            (_, true) => format!("{}.{}", 4 + n % 9, n % 10),
            (_, false) => format!("0.{:02}", 5 + (n * 37) % 60),
        };
        (asset, amount, to)
    }

    /// Send `order(n)` for n = 0, 1, … every `pause`, forever; each answer is passed
    /// to `seen`.
    pub async fn run(self, pause: Duration, mut seen: impl FnMut(u64, &Value) + Send) {
        let run_id = HEXLOWER.encode(&crate::keys::random_bytes::<4>().unwrap_or_default());
        for n in 0.. {
            let (asset, amount, to) = Bot::order(n);
            let http = if n % 9 == 8 { &self.elsewhere } else { &self.http };
            match self.withdraw_via(http, asset, &amount, &to, &format!("demo-{run_id}-{n}")).await {
                Ok(answer) => seen(n, &answer),
                Err(e) => tracing::warn!(error = %e, "demo bot"),
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// Copy a stored operation `count` times, for volume: the demo's backlog
/// (`COUNTERSIGN_DEMO_BACKLOG`) and the scale benchmark (`tests/bench/gateway.rs`).
/// Copy `i` (for `i` in `first..first + count`) is the template with the id
/// `{prefix}{i}`, created `i * spacing_seconds` earlier, expiring `extend_seconds`
/// later, with an idempotency key of its own; its canonical form and digest are its
/// own (an approver's client verifies them). Rows are written as intake writes them
/// ([`Store::insert_operation_row`](crate::store::Store::insert_operation_row)), in
/// one transaction, without audit entries or ledger rows: listing, reading and the
/// inbox see them as any other operation.
///
/// # Errors
/// Database errors; the template does not exist (nothing is copied).
pub async fn copy_operation(
    state: &AppState,
    template: &str,
    prefix: &str,
    first: i64,
    count: i64,
    spacing_seconds: i64,
    extend_seconds: i64,
) -> Result<u64> {
    let record = state
        .store
        .operation(template)
        .await?
        .ok_or_else(|| Error::not_found(&format!("operation {template}")))?;
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    for i in first..first + count {
        let mut op = record.operation.clone();
        op.id = format!("{prefix}{i}").parse().map_err(Error::internal)?;
        op.created_at = op.created_at.minus_seconds(i * spacing_seconds);
        op.expires_at = op.expires_at.plus_seconds(extend_seconds);
        let new = crate::store::NewOperation {
            operation: op,
            state: record.state,
            verdict: record.verdict.clone(),
            risk: record.risk.clone(),
            idempotency_key: Some(format!("copy-{prefix}{i}")),
            request_hash: record.request_hash.clone(),
        };
        crate::store::Store::insert_operation_row(&mut tx, &new, now)
            .await?
            .ok_or_else(|| Error::conflict("operation.exists", format!("{prefix}{i} is already stored")))?;
    }
    tx.commit().await?;
    Ok(u64::try_from(count).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_traffic_is_mostly_small_with_some_large_and_new_addresses() {
        let orders: Vec<_> = (0..45).map(Bot::order).collect();
        let large = orders
            .iter()
            .filter(|(asset, amount, _)| {
                let v: f64 = amount.parse().unwrap();
                if *asset == "USDC" { v >= 10_000.0 } else { v * 3000.0 >= 10_000.0 }
            })
            .count();
        let new = orders.iter().filter(|(_, _, to)| !KNOWN.iter().any(|(_, k)| k == to)).count();
        assert_eq!(large, 9, "every fifth order needs two traders");
        assert_eq!(new, 6, "every seventh goes to a new address");
        assert!(orders.iter().all(|(_, _, to)| to.len() == 42 && to.starts_with("0x")));
    }
}
