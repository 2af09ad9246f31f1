//! Fault injection (issue 10): real gateway processes on one database, a mixed
//! workload, and faults at random moments; then the invariant checker.
//!
//! - **Crash**: a gateway is killed with SIGKILL at random moments (`--kills`,
//!   spread over the time the bots take at 50 withdrawals/s) and restarted; bots retry with their idempotency keys, approvers retry their
//!   decisions.
//! - **Several instances** (`--instances 2|3`, PostgreSQL): bots and approvers spread
//!   their requests across them; a random instance is killed each time; one
//!   approver races the same key on two instances for the same operation, and
//!   exactly one of the two may count.
//! - **Database outages** (`--db-outages`, PostgreSQL): the gateways reach the
//!   database through a TCP proxy this tool cuts and restores; every answer during an
//!   outage must be `503 store.unavailable` (or no answer), never a wrong one.
//!   `--pg-restarts` restarts the machine's PostgreSQL cluster itself
//!   (`pg_ctlcluster restart`; long mode only, as it interrupts every user of it).
//!
//! Workload: `--withdrawals` from three bot workers (about 30% above the $10,000
//! tier, so they wait for two of three traders; 2% to a sanctioned address, denied),
//! three traders approving (one rejects about 5% of what she sees). Settlement is an
//! HTTP sink that keeps every document it receives.
//!
//! At the end every gateway is stopped and `countersign-gateway check` runs with
//! what bots were told (`accepted.jsonl`) and what settlement received
//! (`settled.jsonl`); its verdict is this tool's exit status. The seed is printed
//! first: `--seed N` replays the same schedule of kills and amounts.
//!
//! `cargo run -p countersign-e2e --example faults -- --gateway target/debug/countersign-gateway --db sqlite`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods
)]

#[allow(dead_code, unused_imports)]
#[path = "../../crates/gateway/tests/gateway/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use countersign_client::{Client, EnrollmentLink, Session};
use countersign_core::Decision;
use countersign_softkey::SoftKey;
use serde_json::{Value, json};
use support::*;

// ------------------------------------------------------------------ arguments, RNG

#[derive(Debug, Clone)]
struct Args {
    gateway: PathBuf,
    db: Db,
    withdrawals: usize,
    kills: usize,
    instances: usize,
    db_outages: usize,
    pg_restarts: usize,
    seed: u64,
    out: Option<PathBuf>,
    trace_logs: bool,
}

fn args() -> Args {
    let mut a = Args {
        gateway: PathBuf::from("target/debug/countersign-gateway"),
        db: Db::Sqlite,
        withdrawals: 300,
        kills: 10,
        instances: 1,
        db_outages: 0,
        pg_restarts: 0,
        seed: 0,
        out: None,
        trace_logs: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--gateway" => a.gateway = PathBuf::from(value()),
            "--db" => {
                a.db = match value().as_str() {
                    "sqlite" => Db::Sqlite,
                    "postgres" => Db::Postgres,
                    other => panic!("--db sqlite|postgres, not {other}"),
                }
            }
            "--withdrawals" => a.withdrawals = value().parse().expect("--withdrawals N"),
            "--kills" => a.kills = value().parse().expect("--kills N"),
            "--instances" => a.instances = value().parse().expect("--instances N"),
            "--db-outages" => a.db_outages = value().parse().expect("--db-outages N"),
            "--pg-restarts" => a.pg_restarts = value().parse().expect("--pg-restarts N"),
            "--seed" => a.seed = value().parse().expect("--seed N"),
            "--out" => a.out = Some(PathBuf::from(value())),
            "--trace-logs" => a.trace_logs = true,
            other => panic!("unknown argument {other}"),
        }
    }
    if a.seed == 0 {
        a.seed = u64::from_be_bytes(countersign_gateway::keys::random_bytes::<8>().unwrap()) >> 12;
    }
    assert!(a.instances >= 1, "--instances must be at least 1");
    assert!(
        a.db == Db::Postgres || (a.instances == 1 && a.db_outages == 0 && a.pg_restarts == 0),
        "several instances and database outages need --db postgres"
    );
    a
}

/// SplitMix64: a small seeded generator, so a seed replays the same schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

// ------------------------------------------------------------------ secrets

/// The traders' PIN in this run: long and distinctive, so finding it in a log is
/// never a coincidence.
const PIN: &str = "73918462";

fn fault_key() -> SoftKey {
    let key = SoftKey::new("fault run key").unwrap();
    key.set_pin(PIN).unwrap();
    key
}

fn fault_ceremony() -> countersign_keys::Ceremony {
    countersign_softkey::SimulatedPerson::new(PIN).ceremony()
}

/// Every secret the run handled, by what it is, and every answer the gateway
/// gave (with `--trace-logs` these are scanned for the secrets at the end).
static SECRETS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
static ANSWERS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn secret(what: &str, value: impl Into<String>) {
    SECRETS.lock().unwrap().push((what.to_owned(), value.into()));
}

/// Each secret in the encodings it could leak in.
fn encodings(what: &str, bytes: &[u8]) {
    use data_encoding::{BASE64, BASE64URL_NOPAD, HEXLOWER};
    secret(&format!("{what} (hex)"), HEXLOWER.encode(bytes));
    secret(&format!("{what} (base64url)"), BASE64URL_NOPAD.encode(bytes));
    secret(&format!("{what} (base64)"), BASE64.encode(bytes).trim_end_matches('=').to_owned());
}

/// Scan the gateways' logs and every answer for every secret; returns what leaked.
fn scan_for_secrets(dir: &Path) -> (Vec<String>, usize, usize) {
    // The gateway's own keys and TLS key, from its data directory.
    if let Ok(hex) = std::fs::read_to_string(dir.join("gateway-keys")) {
        let bytes = data_encoding::HEXLOWER.decode(hex.trim().as_bytes()).unwrap();
        encodings("gateway signing key", &bytes[..32]);
        encodings("gateway HMAC master key", &bytes[32..]);
    }
    if let Ok(pem) = std::fs::read_to_string(dir.join("tls/key.pem")) {
        for line in pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 20) {
            secret("TLS private key", line);
        }
    }
    secret("PIN", PIN);
    let secrets = SECRETS.lock().unwrap().clone();
    let mut texts: Vec<(String, String)> =
        ANSWERS.lock().unwrap().iter().map(|a| ("an answer".to_owned(), a.clone())).collect();
    let mut log_bytes = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
            log_bytes += text.len();
            texts.push((name, text));
        }
    }
    let mut leaks = BTreeSet::new();
    for (what, value) in &secrets {
        for (place, text) in &texts {
            if value.len() >= 8 && text.contains(value.as_str()) {
                leaks.insert(format!("{what} found in {place}"));
            }
        }
    }
    (leaks.into_iter().collect(), secrets.len(), log_bytes)
}

// ------------------------------------------------------------------ gateway processes

struct Instance {
    addr: String,
    child: Option<Child>,
    log: PathBuf,
}

struct Cluster {
    binary: PathBuf,
    config: PathBuf,
    instances: Vec<Mutex<Instance>>,
    http: reqwest::Client,
    kills: AtomicUsize,
    restarts_ms: Mutex<Vec<u128>>,
    log_level: &'static str,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    fn host(&self, args: &[&str]) -> String {
        let out = Command::new(&self.binary)
            .args(args)
            .env("COUNTERSIGN_CONFIG", &self.config)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.binary.display()));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    fn spawn(&self, i: usize) {
        let mut inst = self.instances[i].lock().unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&inst.log).unwrap();
        let child = Command::new(&self.binary)
            .arg("serve")
            .env("COUNTERSIGN_CONFIG", &self.config)
            .env("COUNTERSIGN_LISTEN", &inst.addr)
            .env("RUST_LOG", self.log_level)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        inst.child = Some(child);
    }

    async fn wait_ready(&self, i: usize) {
        let url = format!("https://{}/healthz", self.instances[i].lock().unwrap().addr);
        let started = Instant::now();
        loop {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "gateway {i} did not come up: see its log");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn start(&self, i: usize) {
        self.spawn(i);
        self.wait_ready(i).await;
    }

    fn kill(&self, i: usize) {
        let mut inst = self.instances[i].lock().unwrap();
        if let Some(mut child) = inst.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    fn stop_all(&self) {
        for i in 0..self.instances.len() {
            self.kill(i);
        }
    }

    fn base(&self, i: usize) -> String {
        format!("https://{}", self.instances[i % self.instances.len()].lock().unwrap().addr)
    }
}

// ------------------------------------------------------------------ settlement sink

#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<Vec<Value>>>,
}

async fn receive(
    axum::extract::State(sink): axum::extract::State<Sink>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    match serde_json::from_slice(&body) {
        Ok(doc) => {
            sink.received.lock().unwrap().push(doc);
            axum::http::StatusCode::OK
        }
        Err(_) => axum::http::StatusCode::BAD_REQUEST,
    }
}

async fn start_sink() -> (Sink, String) {
    let sink = Sink::default();
    let app = axum::Router::new().route("/settle", axum::routing::post(receive)).with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/settle", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (sink, url)
}

// ------------------------------------------------------------------ database proxy

/// A TCP proxy in front of PostgreSQL: `down()` cuts every connection and refuses
/// new ones until `up()`.
#[derive(Clone)]
struct Proxy {
    up: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(target: String) -> (Proxy, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy { up: Arc::new(AtomicBool::new(true)), epoch: Arc::default() };
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { continue };
                if !p.up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let p = p.clone();
                tokio::spawn(async move {
                    let epoch = p.epoch.load(Ordering::SeqCst);
                    let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else { return };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    let cut = {
                        let p = p.clone();
                        async move {
                            while p.epoch.load(Ordering::SeqCst) == epoch {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy(&mut ri, &mut wo) => {}
                        _ = tokio::io::copy(&mut ro, &mut wi) => {}
                        () = cut => {}
                    }
                });
            }
        });
        (proxy, port)
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

// ------------------------------------------------------------------ the run

#[derive(Default)]
struct Tally {
    accepted: Mutex<Vec<(String, String)>>,
    by_state: Mutex<BTreeMap<String, usize>>,
    retries: AtomicUsize,
    throttled: AtomicUsize,
    replayed: AtomicUsize,
    decisions: AtomicUsize,
    decision_retries: AtomicUsize,
    races: Mutex<Vec<String>>,
    /// Answers while the database was cut: (status, code) → count.
    during_outage: Mutex<BTreeMap<String, usize>>,
    unexpected: Mutex<Vec<String>>,
}

fn policy_without_velocity() -> countersign_core::policy::Policy {
    let mut p = policy();
    p.velocity.clear();
    p
}

fn write_config(dir: &Path, database: Option<&str>, webhook: &str) -> PathBuf {
    let config = format!(
        "data_dir = {dir:?}\nsweep_interval_seconds = 1\ncheckpoint_every = 50\n\
         ceremonies_per_minute_per_source = 100000\nceremonies_per_minute_per_person = 100000\n{db}\
         [tls]\nnames = [\"localhost\", \"127.0.0.1\"]\n\
         [webauthn]\nrp_id = \"localhost\"\norigin = \"https://localhost\"\nattestation_presets = [\"development\"]\n\
         [settlement]\nwebhook_url = {webhook:?}\ntimeout_seconds = 2\n{ASSETS_TOML}\n{}",
        policy_toml(&policy_without_velocity()),
        dir = dir.display().to_string(),
        db = database.map(|d| format!("database = {d:?}\n")).unwrap_or_default(),
    );
    let path = dir.join("countersign.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn withdrawal(i: usize, rng: &mut Rng) -> Value {
    let to = "0x8ba1f109551bD432803012645Ac136ddd64DBA72";
    if rng.chance(2) {
        return eth_to("0.1", "0x000000000000000000000000000000000000dEaD");
    }
    if rng.chance(30) {
        // $10,500–$19,500: two traders.
        return eth_to(&format!("{}.{}", 3 + rng.below(3), 5 + i % 5), to);
    }
    eth_to(&format!("0.{:02}", 1 + rng.below(98)), to)
}

/// Bots send at about this many withdrawals per second in all, so the faults land
/// while work is in flight.
const RATE: u64 = 50;

async fn bot(
    cluster: Arc<Cluster>,
    key: Arc<TestKey>,
    work: Vec<(usize, Value)>,
    tally: Arc<Tally>,
    outage: Arc<AtomicBool>,
    seed: u64,
) {
    let mut pace = tokio::time::interval(Duration::from_millis(3000 / RATE));
    for (i, body) in work {
        pace.tick().await;
        let bytes = serde_json::to_vec(&body).unwrap();
        let idem = format!("faults-{seed}-{i}");
        let mut attempt = 0usize;
        loop {
            let base = cluster.base(i + attempt);
            attempt += 1;
            let nonce = Gateway::fresh_nonce();
            let ts =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
            let sig = key.sign("POST", "/v1/withdrawals", "", ts, &nonce, &idem, &bytes);
            let sent = cluster
                .http
                .post(format!("{base}/v1/withdrawals"))
                .header("CS-Key", &key.id)
                .header("CS-Timestamp", ts.to_string())
                .header("CS-Nonce", &nonce)
                .header("CS-Signature", sig)
                .header("Idempotency-Key", &idem)
                .header("content-type", "application/json")
                .body(bytes.clone())
                .send()
                .await;
            let cut = outage.load(Ordering::SeqCst);
            let reply = match sent {
                Ok(r) => {
                    let reply = Reply::from(r).await;
                    ANSWERS.lock().unwrap().push(reply.body.to_string());
                    reply
                }
                Err(_) => {
                    tally.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if cut {
                *tally
                    .during_outage
                    .lock()
                    .unwrap()
                    .entry(format!("{} {}", reply.status, reply.code()))
                    .or_default() += 1;
            }
            match reply.status {
                201 | 202 | 403 if reply.body["operation"]["id"].is_string() => {
                    if reply.headers.contains_key("idempotent-replayed") {
                        tally.replayed.fetch_add(1, Ordering::Relaxed);
                    }
                    let id = reply.op_id();
                    let digest = reply.body["digest"].as_str().unwrap_or_default().to_owned();
                    tally.accepted.lock().unwrap().push((id, digest));
                    *tally.by_state.lock().unwrap().entry(reply.state().to_owned()).or_default() += 1;
                    break;
                }
                // The per-key cap on operations waiting for approval: back off until
                // the traders catch up, as a real bot would.
                429 if reply.code() == "intake.too_many_pending" => {
                    tally.throttled.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // A database outage, or admission control while requests wait on it.
                503 if reply.code() == "store.unavailable" || reply.code() == "intake.busy" => {
                    tally.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => {
                    tally.unexpected.lock().unwrap().push(format!(
                        "withdrawal {i} (outage: {cut}): {} {} {}",
                        reply.status,
                        reply.code(),
                        reply.body
                    ));
                    if reply.status >= 500 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    break;
                }
            }
        }
    }
}

struct Person {
    id: String,
    key: SoftKey,
    clients: Vec<Client>,
    session: Mutex<Session>,
}

fn retryable(code: &str) -> bool {
    matches!(code, "client.unreachable" | "client.timeout" | "store.unavailable" | "internal")
        || code.starts_with("ceremony.")
}

async fn decide_once(
    p: &Person,
    client: &Client,
    op: &str,
    d: Decision,
) -> Result<Value, countersign_client::Error> {
    let session = p.session.lock().unwrap().clone();
    let challenge = client.challenge(&session, op, d).await?;
    client.sign_decision(&session, challenge, Some("fault run"), p.key.clone(), &fault_ceremony()).await
}

async fn relogin(p: &Person, client: &Client) {
    if let Ok(s) = client.login(&p.id, p.key.clone(), &fault_ceremony()).await {
        secret("session token", s.expose());
        *p.session.lock().unwrap() = s;
    }
}

async fn approver_loop(
    p: Arc<Person>,
    done: Arc<AtomicBool>,
    tally: Arc<Tally>,
    reject_percent: u64,
    seed: u64,
) {
    let mut rng = Rng(seed);
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut turn = 0usize;
    while !done.load(Ordering::SeqCst) {
        turn += 1;
        let client = &p.clients[turn % p.clients.len()];
        let session = p.session.lock().unwrap().clone();
        let pending = match client.pending(&session).await {
            Ok(list) => list,
            Err(e) => {
                if e.code().starts_with("session.") {
                    relogin(&p, client).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let todo: Vec<String> =
            pending.iter().map(|o| o.operation.id.to_string()).filter(|id| !finished.contains(id)).collect();
        if todo.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        for id in todo {
            let d = if rng.chance(reject_percent) { Decision::Reject } else { Decision::Approve };
            let client = &p.clients[rng.below(p.clients.len() as u64) as usize];
            match decide_once(&p, client, &id, d).await {
                Ok(_) => {
                    tally.decisions.fetch_add(1, Ordering::Relaxed);
                    finished.insert(id);
                }
                Err(e) => {
                    ANSWERS.lock().unwrap().push(e.to_string());
                    match e.code() {
                        "decision.already_decided" | "decision.not_pending" | "decision.expired" => {
                            finished.insert(id);
                        }
                        c if c.starts_with("session.") => relogin(&p, client).await,
                        c if retryable(c) => {
                            tally.decision_retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        other => {
                            tally
                                .unexpected
                                .lock()
                                .unwrap()
                                .push(format!("{} deciding {id}: {other}: {e}", p.id));
                            finished.insert(id);
                        }
                    }
                }
            }
        }
    }
}

/// One person signs the same decision twice, through two instances at once:
/// exactly one may count.
async fn race(p: &Person, op: &str, tally: &Tally) -> bool {
    let session = p.session.lock().unwrap().clone();
    let (a, b) = (&p.clients[0], &p.clients[1]);
    let (Ok(ca), Ok(cb)) = tokio::join!(
        a.challenge(&session, op, Decision::Approve),
        b.challenge(&session, op, Decision::Approve)
    ) else {
        return false;
    };
    let (pa, pb) = (fault_ceremony(), fault_ceremony());
    let (ra, rb) = tokio::join!(
        a.sign_decision(&session, ca, Some("race"), p.key.clone(), &pa),
        b.sign_decision(&session, cb, Some("race"), p.key.clone(), &pb)
    );
    let codes: Vec<String> = [&ra, &rb]
        .iter()
        .map(|r| match r {
            Ok(_) => "counted".to_owned(),
            Err(e) => e.code().to_owned(),
        })
        .collect();
    let counted = codes.iter().filter(|c| *c == "counted").count();
    let transient = codes.iter().any(|c| retryable(c));
    if counted > 1 {
        tally.unexpected.lock().unwrap().push(format!("race on {op}: both decisions counted"));
    }
    if !transient {
        tally.races.lock().unwrap().push(codes.join(" + "));
    }
    !codes.iter().any(|c| c == "assertion.credential_not_active")
}

/// Restart the newest local PostgreSQL cluster, as `scripts/setup` started it.
fn restart_postgres() -> bool {
    let version = std::fs::read_dir("/etc/postgresql").ok().and_then(|d| {
        d.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
    });
    let Some(version) = version else { return false };
    Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .is_ok_and(|s| s.success())
}

async fn pending_count(store: &countersign_gateway::store::Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM operations WHERE state = 'pending'")
        .fetch_one(store.pool())
        .await
        .unwrap_or(-1)
}

async fn undelivered_count(store: &countersign_gateway::store::Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM settlement_ledger WHERE delivered_at IS NULL")
        .fetch_one(store.pool())
        .await
        .unwrap_or(-1)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = args();
    let started = Instant::now();
    println!(
        "faults: seed {} · {} · {} withdrawals · {} kills · {} instance(s) · {} database outage(s) · {} PostgreSQL restart(s)",
        args.seed,
        if args.db == Db::Sqlite { "SQLite" } else { "PostgreSQL" },
        args.withdrawals,
        args.kills,
        args.instances,
        args.db_outages,
        args.pg_restarts
    );
    let mut rng = Rng(args.seed);
    let keep = args.out.clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    // Installs the TLS crypto provider the clients below use.
    let _ = countersign_gateway::release::http_client(Duration::from_secs(1)).unwrap();

    // Database: a fresh SQLite file, or a fresh PostgreSQL database (behind the
    // proxy when outages are asked for).
    let (sink, sink_url) = start_sink().await;
    let mut pg_name = None;
    let mut proxy = None;
    let database = match args.db {
        Db::Sqlite => None,
        Db::Postgres => {
            let (url, name) = fresh_postgres_url().await;
            pg_name = Some(name.clone());
            if args.db_outages > 0 {
                let target = url.split('@').nth(1).unwrap().split('/').next().unwrap().to_owned();
                let (p, port) = Proxy::start(target.clone()).await;
                proxy = Some(p);
                Some(url.replacen(&target, &format!("127.0.0.1:{port}"), 1))
            } else {
                Some(url)
            }
        }
    };
    let config = write_config(&dir, database.as_deref(), &sink_url);
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let cluster = Arc::new(Cluster {
        binary: args.gateway.clone(),
        config: config.clone(),
        instances: (0..args.instances)
            .map(|i| {
                Mutex::new(Instance {
                    addr: format!("127.0.0.1:{}", free_port()),
                    child: None,
                    log: dir.join(format!("gateway-{i}.log")),
                })
            })
            .collect(),
        http,
        kills: AtomicUsize::new(0),
        restarts_ms: Mutex::default(),
        log_level: if args.trace_logs { "trace" } else { "warn" },
    });

    // Host bootstrap, as an operator would: an Ed25519 API key for the bot, and
    // enrollment links for three traders and the racer.
    let bot_key = {
        let sk =
            ed25519_dalek::SigningKey::from_bytes(&countersign_gateway::keys::random_bytes::<32>().unwrap());
        let pk = data_encoding::BASE64URL_NOPAD.encode(sk.verifying_key().as_bytes());
        encodings("the bot's API private key", sk.as_bytes());
        cluster.host(&[
            "api-key",
            "create",
            "--id",
            "key_bot",
            "--owner",
            "ops",
            "--algorithm",
            "ed25519",
            "--public-key",
            &pk, // base64url: may begin with '-' (the CLI accepts that)
            "--scope",
            "withdraw,read",
            "--allow-ip",
            "127.0.0.0/8",
        ]);
        Arc::new(TestKey { id: "key_bot".into(), secret: Secret::Ed25519(sk) })
    };
    for i in 0..args.instances {
        cluster.start(i).await;
    }
    // One code at a time: outstanding bootstrap codes count as possible admins.
    let mut people = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        let out = cluster.host(&[
            "approver", "code", "--id", name, "--name", name, "--role", "approver", "--group", "traders",
        ]);
        let link = out.lines().find(|l| l.starts_with("countersign://")).unwrap();
        let link = EnrollmentLink::parse(link).unwrap();
        secret("enrollment code", link.code.clone());
        let clients: Vec<Client> = (0..args.instances.max(2))
            .map(|i| Client::new(&cluster.base(i), link.pin.as_deref()).unwrap())
            .collect();
        let key = fault_key();
        clients[0].enroll(&link.code, "key", key.clone(), &fault_ceremony()).await.unwrap();
        let session = clients[0].login(name, key.clone(), &fault_ceremony()).await.unwrap();
        secret("session token", session.expose());
        people.push(Arc::new(Person { id: name.to_owned(), key, clients, session: Mutex::new(session) }));
    }
    println!(
        "ready after {:.1} s: {} gateway(s) up, 4 traders enrolled",
        started.elapsed().as_secs_f64(),
        args.instances
    );

    // The workload.
    let tally = Arc::new(Tally::default());
    let outage = Arc::new(AtomicBool::new(false));
    let mut work: Vec<Vec<(usize, Value)>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for i in 0..args.withdrawals {
        work[i % 3].push((i, withdrawal(i, &mut rng)));
    }
    let bots: Vec<_> = work
        .into_iter()
        .map(|w| {
            tokio::spawn(bot(cluster.clone(), bot_key.clone(), w, tally.clone(), outage.clone(), args.seed))
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let approvers: Vec<_> = people[..3]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let reject = if i == 2 { 5 } else { 0 };
            tokio::spawn(approver_loop(
                p.clone(),
                done.clone(),
                tally.clone(),
                reject,
                args.seed ^ (i as u64 + 1),
            ))
        })
        .collect();

    // Faults, on a seeded schedule.
    // Spread over the time the bots take: gaps of 0.5–1.5× the mean.
    let span_ms = args.withdrawals as u64 * 1000 / RATE;
    let mean_gap = span_ms / (args.kills as u64 + 1);
    let schedule: Vec<(u64, usize)> = (0..args.kills)
        .map(|_| {
            ((mean_gap / 2 + rng.below(mean_gap + 1)).max(100), rng.below(args.instances as u64) as usize)
        })
        .collect();
    let mean_gap = span_ms / (args.db_outages as u64 + 1);
    let outages: Vec<(u64, u64)> = (0..args.db_outages)
        .map(|_| ((mean_gap / 2 + rng.below(mean_gap + 1)).max(100), 500 + rng.below(2000)))
        .collect();
    let mean_gap = span_ms / (args.pg_restarts as u64 + 1);
    let restarts: Vec<u64> =
        (0..args.pg_restarts).map(|_| (mean_gap / 2 + rng.below(mean_gap + 1)).max(100)).collect();
    let killer = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            for (wait, i) in schedule {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                cluster.kill(i);
                cluster.kills.fetch_add(1, Ordering::SeqCst);
                let t = Instant::now();
                cluster.start(i).await;
                cluster.restarts_ms.lock().unwrap().push(t.elapsed().as_millis());
            }
        })
    };
    let cutter = {
        let proxy = proxy.clone();
        let outage = outage.clone();
        tokio::spawn(async move {
            let Some(proxy) = proxy else { return };
            for (wait, length) in outages {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                outage.store(true, Ordering::SeqCst);
                proxy.down();
                tokio::time::sleep(Duration::from_millis(length)).await;
                proxy.up();
                // Answers already in flight when the database came back are not
                // counted as outage answers.
                tokio::time::sleep(Duration::from_millis(200)).await;
                outage.store(false, Ordering::SeqCst);
            }
        })
    };
    // Real restarts of the machine's PostgreSQL cluster (`pg_ctlcluster … restart`).
    let restarter = {
        let outage = outage.clone();
        tokio::spawn(async move {
            for wait in restarts {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                outage.store(true, Ordering::SeqCst);
                let t = Instant::now();
                let ok = tokio::task::spawn_blocking(restart_postgres).await.unwrap();
                println!(
                    "PostgreSQL restarted in {} ms{}",
                    t.elapsed().as_millis(),
                    if ok { "" } else { " (FAILED)" }
                );
                assert!(ok, "pg_ctlcluster restart failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                outage.store(false, Ordering::SeqCst);
            }
        })
    };
    // The racer: dave decides some held operations on two instances at once.
    let racer = {
        let dave = people[3].clone();
        let tally = tally.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut raced = BTreeSet::new();
            while !done.load(Ordering::SeqCst) && raced.len() < 20 {
                let session = dave.session.lock().unwrap().clone();
                let Ok(list) = dave.clients[0].pending(&session).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let Some(op) = list.iter().map(|o| o.operation.id.to_string()).find(|id| !raced.contains(id))
                else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                raced.insert(op.clone());
                if !race(&dave, &op, &tally).await {
                    break; // the key was flagged as cloned: it no longer decides
                }
            }
        })
    };

    for b in bots {
        b.await.unwrap();
    }
    let intake_done = started.elapsed();
    killer.await.unwrap();
    cutter.await.unwrap();
    restarter.await.unwrap();
    let store = countersign_gateway::store::Store::connect(&countersign_gateway::config::DatabaseUrl::new(
        match args.db {
            Db::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("countersign.db").display()),
            Db::Postgres => database.clone().unwrap(),
        },
    ))
    .await
    .unwrap();
    // Every held operation decided, every release delivered (a delivery claimed by
    // a killed instance is retried when its 60 s lease runs out).
    let settle_started = Instant::now();
    loop {
        let (pending, undelivered) = (pending_count(&store).await, undelivered_count(&store).await);
        if pending == 0 && undelivered == 0 {
            break;
        }
        if settle_started.elapsed() > Duration::from_secs(120) {
            tally
                .unexpected
                .lock()
                .unwrap()
                .push(format!("after 120 s still {pending} pending and {undelivered} undelivered"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    done.store(true, Ordering::SeqCst);
    for a in approvers {
        a.await.unwrap();
    }
    racer.await.unwrap();
    cluster.stop_all();
    drop(store);

    // What bots were told and what settlement received, for the checker.
    let accepted = tally.accepted.lock().unwrap().clone();
    let accepted_path = dir.join("accepted.jsonl");
    let lines: String =
        accepted.iter().map(|(id, d)| format!("{}\n", json!({"id": id, "digest": d}))).collect();
    std::fs::write(&accepted_path, lines).unwrap();
    let settled = sink.received.lock().unwrap().clone();
    let settled_path = dir.join("settled.jsonl");
    let lines: String = settled.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(&settled_path, lines).unwrap();

    let restarts = cluster.restarts_ms.lock().unwrap().clone();
    let mut sorted = restarts.clone();
    sorted.sort_unstable();
    println!(
        "workload: {} withdrawals accepted in {:.1} s ({:?}); {} retried sends; {} idempotent replays; {} held back by the pending cap",
        accepted.len(),
        intake_done.as_secs_f64(),
        tally.by_state.lock().unwrap(),
        tally.retries.load(Ordering::Relaxed),
        tally.replayed.load(Ordering::Relaxed),
        tally.throttled.load(Ordering::Relaxed),
    );
    println!(
        "approvals: {} decisions counted, {} retried; settlement received {} documents",
        tally.decisions.load(Ordering::Relaxed),
        tally.decision_retries.load(Ordering::Relaxed),
        settled.len()
    );
    println!(
        "faults: {} SIGKILLs, restart to healthy p50 {} ms, max {} ms",
        cluster.kills.load(Ordering::SeqCst),
        sorted.get(sorted.len() / 2).copied().unwrap_or(0),
        sorted.last().copied().unwrap_or(0)
    );
    if args.instances > 1 {
        let races = tally.races.lock().unwrap().clone();
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        for r in &races {
            *outcomes.entry(r.clone()).or_default() += 1;
        }
        println!("same key on two instances: {} races, outcomes {outcomes:?}", races.len());
    }
    if args.db_outages > 0 || args.pg_restarts > 0 {
        println!("answers while the database was away: {:?}", tally.during_outage.lock().unwrap());
    }

    let mut failed = false;
    let unexpected = tally.unexpected.lock().unwrap().clone();
    for u in unexpected.iter().take(20) {
        println!("UNEXPECTED {u}");
    }
    if !unexpected.is_empty() {
        println!("{} unexpected answers", unexpected.len());
        failed = true;
    }
    for (answer, n) in tally.during_outage.lock().unwrap().iter() {
        // A specific answer, not a guess: stored (201, 202), refused by policy (403),
        // the database away (503), or the key's pending cap reached (429: with
        // approvals failing during the outage, a busy key's held operations pile up).
        let clear = answer.starts_with("503 store.unavailable")
            || answer.starts_with("201 ")
            || answer.starts_with("202 ")
            || answer.starts_with("403 ")
            || answer.starts_with("429 intake.too_many_pending");
        if !clear {
            println!("UNCLEAR answer during an outage: {answer} ×{n}");
            failed = true;
        }
    }
    if accepted.len() != args.withdrawals {
        println!("only {} of {} withdrawals were accepted", accepted.len(), args.withdrawals);
        failed = true;
    }
    if cluster.kills.load(Ordering::SeqCst) != args.kills {
        println!("only {} of {} kills happened", cluster.kills.load(Ordering::SeqCst), args.kills);
        failed = true;
    }

    if args.trace_logs {
        let (leaks, secrets, log_bytes) = scan_for_secrets(&dir);
        println!(
            "secrets: {secrets} secret values (API private key, session tokens, enrollment codes, PIN, gateway and TLS keys) \
             searched in {:.1} MB of trace-level gateway logs and {} answers: {} found",
            log_bytes as f64 / 1e6,
            ANSWERS.lock().unwrap().len(),
            leaks.len()
        );
        for leak in &leaks {
            println!("SECRET LEAKED: {leak}");
            failed = true;
        }
    }

    println!("invariant checker (countersign-gateway check):");
    let out = Command::new(&args.gateway)
        .args(["check", "--accepted"])
        .arg(&accepted_path)
        .arg("--settled")
        .arg(&settled_path)
        .env("COUNTERSIGN_CONFIG", &config)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        failed = true;
    }
    if let Some(name) = pg_name {
        let _ = Command::new("psql")
            .args(["-q", &postgres_admin_url(), "-c"])
            .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .output();
    }
    println!(
        "faults: {} in {:.1} s (seed {}{})",
        if failed { "FAILED" } else { "passed" },
        started.elapsed().as_secs_f64(),
        args.seed,
        keep.as_ref().map(|d| format!(", files in {}", d.display())).unwrap_or_default()
    );
    if failed {
        if keep.is_none() {
            // Keep the logs and evidence of a failed run.
            println!("logs and evidence kept in {}", tmp.keep().display());
        }
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
