//! Test support: a gateway on port 0 over real HTTP, on SQLite (a temp dir) or
//! PostgreSQL (a fresh database per test), with a fixed clock, and a client that
//! signs requests with its own implementation of docs/api-signing.md.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use countersign_core::operation::{Scope, SigningAlgorithm};
use countersign_core::policy::*;
#[allow(unused_imports)]
use countersign_core::verdict::*;
use countersign_core::{Amount, Timestamp};
use countersign_gateway::clock::FixedClock;
use countersign_gateway::config::{Config, DatabaseUrl};
use countersign_gateway::keys::random_bytes;
use countersign_gateway::store::ApiKeyRecord;
use countersign_gateway::{AppState, router};
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use ed25519_dalek::{Signer, SigningKey};
use hmac::{KeyInit, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub fn t(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

pub fn amt(s: &str) -> Amount {
    Amount::parse(s).unwrap()
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

pub fn quorum(groups: &[(&str, u32)]) -> Quorum {
    Quorum {
        groups: groups.iter().map(|(g, m)| GroupQuorum { group: id(g), min: *m }).collect(),
        rejections_to_veto: 1,
    }
}

/// ≥ $10k needs two traders; $25k per key per hour and $100k per account per day
/// (beyond: approval); a sanctioned address is denied; allowlist not enforced unless a
/// test turns it on.
pub fn policy() -> Policy {
    Policy {
        version: 1,
        reference_currency: id("USD"),
        approval_ttl_seconds: 3600,
        deny: vec![DenyRule {
            reason: "sanctioned address".into(),
            kind: None,
            asset: None,
            network: None,
            account: None,
            api_key: None,
            destination: Some("0x000000000000000000000000000000000000dEaD".into()),
            min_reference_value: None,
        }],
        withdrawal_tiers: vec![Tier {
            name: "large".into(),
            min_reference_value: Some(amt("10000")),
            min_asset_amount: BTreeMap::new(),
            quorum: quorum(&[("traders", 2)]),
        }],
        withdrawal_quorum: quorum(&[("traders", 1)]),
        allowlist: AllowlistRule {
            enforced: false,
            on_breach: Breach::RequireApproval,
            cool_off_seconds: 86_400,
        },
        velocity: vec![
            VelocityLimit {
                name: "per-key hourly".into(),
                scope: VelocityScope::ApiKey,
                window_seconds: 3600,
                max_reference_value: Some(amt("25000")),
                max_count: Some(100),
                on_breach: Breach::RequireApproval,
            },
            VelocityLimit {
                name: "per-account daily".into(),
                scope: VelocityScope::Account,
                window_seconds: 86_400,
                max_reference_value: Some(amt("100000")),
                max_count: None,
                on_breach: Breach::RequireApproval,
            },
        ],
        high_risk: None,
        admin_quorum: quorum(&[("admins", 2)]),
    }
}

pub const ASSETS_TOML: &str = r#"
[[assets]]
code = "ETH"
network = "ethereum"
decimals = 18
price = "3000"
address_format = "evm"

[[assets]]
code = "USDC"
network = "ethereum"
decimals = 6
price = "1"
address_format = "evm"

[[assets]]
code = "XRP"
network = "xrpl"
decimals = 6
price = "0.5"
address_format = "xrpl"
memo = "required"
"#;

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub struct Gateway {
    pub base: String,
    pub state: AppState,
    pub clock: FixedClock,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
    pg_database: Option<String>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(db) = self.pg_database.take() {
            // Best effort (Drop cannot await): psql drops the test database.
            let _ = std::process::Command::new("psql")
                .args(["-q", &postgres_admin_url(), "-c"])
                .arg(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .output();
        }
    }
}

/// The server tests create their databases on: `COUNTERSIGN_TEST_POSTGRES`, which
/// scripts/test sets, or the machine's default.
pub fn postgres_admin_url() -> String {
    std::env::var("COUNTERSIGN_TEST_POSTGRES").unwrap_or_else(|_| POSTGRES_ADMIN_URL.to_owned())
}

pub async fn fresh_postgres_url() -> (String, String) {
    let name = format!("cs_test_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let admin_url = postgres_admin_url();
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {admin_url} is required for these tests (scripts/test starts it): {e}")
    });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    (format!("{base}/{name}"), name)
}

impl Gateway {
    pub async fn start(db: Db) -> Gateway {
        Self::start_with(db, policy()).await
    }

    pub async fn start_with(db: Db, policy: Policy) -> Gateway {
        Self::start_full(db, policy, None).await
    }

    /// With an attestation CA list (software tokens' CAs) for approver enrollment.
    pub async fn start_full(
        db: Db,
        policy: Policy,
        attestation: Option<webauthn_rs::prelude::AttestationCaList>,
    ) -> Gateway {
        Self::start_opts(db, policy, attestation, false).await
    }

    /// Over HTTPS with a self-signed key (pinned by clients), trusting the software
    /// keys' development CA (`attestation_presets = ["development"]`).
    pub async fn start_tls(db: Db) -> Gateway {
        Self::start_tls_with(db, policy()).await
    }

    /// Over HTTPS (as [`Gateway::start_tls`]) with this policy.
    pub async fn start_tls_with(db: Db, policy: Policy) -> Gateway {
        Self::start_opts(db, policy, None, true).await
    }

    /// As [`Gateway::start_tls_with`], for load tests that enroll and log in
    /// hundreds of people from this one address: the per-source and per-person
    /// ceremony limits are lifted (everything else as configured).
    #[allow(dead_code)] // used by the benchmarks, which include this module
    pub async fn start_tls_for_load(db: Db, policy: Policy) -> Gateway {
        Self::start_opts_limits(db, policy, None, true, true).await
    }

    async fn start_opts(
        db: Db,
        policy: Policy,
        attestation: Option<webauthn_rs::prelude::AttestationCaList>,
        tls: bool,
    ) -> Gateway {
        Self::start_opts_limits(db, policy, attestation, tls, false).await
    }

    async fn start_opts_limits(
        db: Db,
        policy: Policy,
        attestation: Option<webauthn_rs::prelude::AttestationCaList>,
        tls: bool,
        lift_ceremony_limits: bool,
    ) -> Gateway {
        static TRACING: std::sync::Once = std::sync::Once::new();
        TRACING.call_once(|| {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
                )
                .with_test_writer()
                .init();
        });
        let dir = tempfile::tempdir().unwrap();
        let (database, pg_database) = match db {
            Db::Sqlite => (None, None),
            Db::Postgres => {
                let (url, name) = fresh_postgres_url().await;
                (Some(DatabaseUrl::new(url)), Some(name))
            }
        };
        let mut config = Config::from_toml(
            &format!("data_dir = {:?}\n{ASSETS_TOML}\n{}", dir.path().display(), policy_toml(&policy)),
            std::path::Path::new("test"),
        )
        .unwrap();
        config.database = database;
        if lift_ceremony_limits {
            config.ceremonies_per_minute_per_source = u32::MAX;
            config.ceremonies_per_minute_per_person = u32::MAX;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        config.public_url = Some(format!("{}://{addr}", if tls { "https" } else { "http" }));
        if tls {
            config.tls = Some(countersign_gateway::tls::TlsConfig {
                names: vec!["localhost".into(), "127.0.0.1".into()],
                ..Default::default()
            });
            config.webauthn.attestation_presets =
                vec![countersign_gateway::config::AttestationPreset::Development];
        }
        let clock = FixedClock::new(t("2026-11-28T12:00:00Z"));
        let mut state = AppState::open(config, Arc::new(clock.clone())).await.unwrap();
        if let Some(list) = attestation {
            state.attestation = list;
        }
        let limits = countersign_gateway::http::Limits::from_config(&state.config);
        let app = router(state.clone());
        let scheme = if tls { "https" } else { "http" };
        let server = match state.tls.clone() {
            Some(t) => {
                let listener = countersign_gateway::tls::TlsListener::new(listener, &t).unwrap();
                tokio::spawn(countersign_gateway::http::serve_app(listener, app, limits))
            }
            None => tokio::spawn(countersign_gateway::http::serve_app(listener, app, limits)),
        };
        Gateway {
            base: format!("{scheme}://{addr}"),
            state,
            clock,
            // API-key traffic in tests does not check the self-signed certificate;
            // approvers' clients pin it (tests/gateway/client.rs).
            http: {
                let client =
                    countersign_gateway::release::http_client(std::time::Duration::from_secs(30)).unwrap();
                if tls {
                    reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap()
                } else {
                    client
                }
            },
            _dir: dir,
            pg_database,
            server,
        }
    }

    pub fn now(&self) -> Timestamp {
        use countersign_gateway::clock::Clock;
        self.clock.now()
    }

    /// Create an API key directly in the store (the host CLI does the same).
    pub async fn api_key(&self, id: &str, spec: KeySpec) -> TestKey {
        let (algorithm, public_key, hmac_salt, secret) = match spec.algorithm {
            SigningAlgorithm::Ed25519 => {
                let sk = SigningKey::from_bytes(&random_bytes::<32>().unwrap());
                let pk = BASE64URL_NOPAD.encode(sk.verifying_key().as_bytes());
                (SigningAlgorithm::Ed25519, Some(pk), None, Secret::Ed25519(sk))
            }
            SigningAlgorithm::HmacSha256 => {
                let salt = random_bytes::<16>().unwrap();
                let secret = self.state.keys.api_key_secret(id, &salt);
                (
                    SigningAlgorithm::HmacSha256,
                    None,
                    Some(HEXLOWER.encode(&salt)),
                    Secret::Hmac(*secret.as_bytes()),
                )
            }
        };
        let record = ApiKeyRecord {
            id: id.parse().unwrap(),
            owner: spec.owner.parse().unwrap(),
            label: "test".into(),
            algorithm,
            public_key,
            hmac_salt,
            scopes: spec.scopes,
            ip_allowlist: spec.allow.iter().map(|s| s.to_string()).collect(),
            max_reference_value: spec.max_value.map(amt),
            created_at: self.now().minus_seconds(90 * 86_400),
            expires_at: spec.expires_at,
            revoked_at: None,
            last_used_at: None,
            last_used_ip: None,
        };
        self.state.store.insert_api_key(&record, self.now()).await.unwrap();
        TestKey { id: id.to_owned(), secret }
    }

    pub async fn send(
        &self,
        key: &TestKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> Reply {
        let nonce = Self::fresh_nonce();
        self.send_signed(key, method, path_and_query, body, self.now().unix(), &nonce, extra).await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn send_signed(
        &self,
        key: &TestKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp: i64,
        nonce: &str,
        extra: &[(&str, &str)],
    ) -> Reply {
        let req = self.request(key, method, path_and_query, body, timestamp, nonce, extra);
        Reply::from(req.send().await.unwrap()).await
    }

    /// A signed request, not yet sent (so several can be in flight at once).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        key: &TestKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp: i64,
        nonce: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let idem =
            extra.iter().find(|(k, _)| k.eq_ignore_ascii_case("idempotency-key")).map_or("", |(_, v)| *v);
        let signature = key.sign(method, path, query, timestamp, nonce, idem, body);
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{}", self.base, path_and_query))
            .header("CS-Key", &key.id)
            .header("CS-Timestamp", timestamp.to_string())
            .header("CS-Nonce", nonce)
            .header("CS-Signature", signature)
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req
    }

    pub fn fresh_nonce() -> String {
        format!("n{}", HEXLOWER.encode(&random_bytes::<12>().unwrap()))
    }

    /// POST /v1/withdrawals with a fresh idempotency key.
    pub async fn withdraw(&self, key: &TestKey, body: &Value) -> Reply {
        let idem = format!("idem-{}", HEXLOWER.encode(&random_bytes::<8>().unwrap()));
        self.withdraw_idem(key, body, &idem).await
    }

    pub async fn withdraw_idem(&self, key: &TestKey, body: &Value, idem: &str) -> Reply {
        let bytes = serde_json::to_vec(body).unwrap();
        self.send(key, "POST", "/v1/withdrawals", &bytes, &[("Idempotency-Key", idem)]).await
    }

    pub async fn audit_events(&self) -> Vec<String> {
        self.state.store.audit_events().await.unwrap().into_iter().map(|e| e.event).collect()
    }

    pub async fn operation_count(&self) -> usize {
        let filter = countersign_gateway::store::OperationFilter::default();
        self.state.store.operations(&filter, 100_000).await.unwrap().len()
    }
}

pub struct KeySpec {
    pub algorithm: SigningAlgorithm,
    pub owner: &'static str,
    pub scopes: BTreeSet<Scope>,
    pub allow: Vec<&'static str>,
    pub max_value: Option<&'static str>,
    pub expires_at: Option<Timestamp>,
}

impl Default for KeySpec {
    fn default() -> Self {
        KeySpec {
            algorithm: SigningAlgorithm::Ed25519,
            owner: "bob",
            scopes: BTreeSet::from([Scope::Read, Scope::Withdraw]),
            allow: vec!["127.0.0.0/8"],
            max_value: None,
            expires_at: None,
        }
    }
}

pub enum Secret {
    Ed25519(SigningKey),
    Hmac([u8; 32]),
}

pub struct TestKey {
    pub id: String,
    pub secret: Secret,
}

impl TestKey {
    /// Signs per docs/api-signing.md (written independently of the gateway's code).
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        query: &str,
        timestamp: i64,
        nonce: &str,
        idempotency_key: &str,
        body: &[u8],
    ) -> String {
        let body_hash = HEXLOWER.encode(&Sha256::digest(body));
        let message = format!(
            "countersign-request-v1\n{method}\n{path}\n{query}\n{timestamp}\n{nonce}\n{idempotency_key}\n{body_hash}"
        );
        match &self.secret {
            Secret::Ed25519(sk) => BASE64URL_NOPAD.encode(&sk.sign(message.as_bytes()).to_bytes()),
            Secret::Hmac(k) => {
                let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(k).unwrap();
                mac.update(message.as_bytes());
                BASE64URL_NOPAD.encode(&mac.finalize().into_bytes())
            }
        }
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn from(r: reqwest::Response) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, headers, body }
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<no error code>")
    }

    pub fn state(&self) -> &str {
        self.body["state"].as_str().unwrap_or("<no state>")
    }

    pub fn op_id(&self) -> String {
        self.body["operation"]["id"].as_str().unwrap().to_owned()
    }
}

/// `n` withdrawals with `body` straight into intake (no HTTP, no request signing:
/// what is raced is intake itself), all at once; their states.
#[allow(dead_code)] // not every binary that includes this module races intake
pub async fn submit_at_once(
    gw: &Gateway,
    key: &ApiKeyRecord,
    body: &[u8],
    n: usize,
) -> Vec<countersign_gateway::store::OpState> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (state, key, body, now) = (gw.state.clone(), key.clone(), body.to_vec(), gw.now());
        set.spawn(async move {
            let ip = "127.0.0.1".parse().unwrap();
            countersign_gateway::intake::submit(&state, &key, &format!("burst-{i}"), &body, ip, now)
                .await
                .unwrap()
                .record
                .state
        });
    }
    set.join_all().await
}

pub fn eth(amount: &str) -> Value {
    eth_to(amount, "0x8ba1f109551bD432803012645Ac136ddd64DBA72")
}

pub fn eth_to(amount: &str, address: &str) -> Value {
    serde_json::json!({
        "account": "acct_main",
        "asset": "ETH",
        "network": "ethereum",
        "amount": amount,
        "destination": {"address": address},
    })
}

/// The policy as the config file's `[policy]` table.
pub fn policy_toml(p: &Policy) -> String {
    #[derive(serde::Serialize)]
    struct Wrapper<'a> {
        policy: &'a Policy,
    }
    toml::to_string(&Wrapper { policy: p }).unwrap()
}

// ---------------------------------------------------------------- approvers' clients

use countersign_client::{Client, EnrollmentLink, Session};
use countersign_core::operation::Role;
use countersign_keys::Ceremony;
use countersign_softkey::SoftKey;

/// The software keys' PIN in tests.
pub const KEY_PIN: &str = "4821";

/// An approver at a software key: types the PIN, touches when asked.
pub fn ceremony() -> Ceremony {
    countersign_softkey::SimulatedPerson::new(KEY_PIN).ceremony()
}

pub fn soft_key() -> SoftKey {
    let key = SoftKey::new("client test key").unwrap();
    key.set_pin(KEY_PIN).unwrap();
    key
}

/// The enrollment link the gateway host prints for a new approver.
pub async fn link(gw: &Gateway, id: &str) -> String {
    bootstrap_link(gw, id, &[Role::Approver], &["traders"]).await
}

/// A bootstrap enrollment link, as the gateway host's CLI prints it.
pub async fn bootstrap_link(gw: &Gateway, id: &str, roles: &[Role], groups: &[&str]) -> String {
    let code = countersign_gateway::approvers::issue_enrollment_code(
        &gw.state,
        &id.parse().unwrap(),
        id,
        &roles.iter().copied().collect(),
        &groups.iter().map(|g| g.parse().unwrap()).collect(),
        None,
        gw.now(),
    )
    .await
    .unwrap();
    gw.state.enrollment_link(&code)
}

/// Enroll and log in through the client, as the CLI and the desktop do.
pub async fn approver(gw: &Gateway, id: &str) -> (Client, Session, SoftKey) {
    let link = EnrollmentLink::parse(&link(gw, id).await).unwrap();
    assert!(link.gateway.starts_with("https://") && link.pin.is_some(), "{link:?}");
    let client = Client::for_link(&link).unwrap();
    let key = soft_key();
    let enrolled = client.enroll(&link.code, "laptop key", key.clone(), &ceremony()).await.unwrap();
    assert_eq!(enrolled.status, "active");
    let session = client.login(id, key.clone(), &ceremony()).await.unwrap();
    (client, session, key)
}
