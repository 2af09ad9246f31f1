//! Gateway benchmarks (issue 9, items 2–4), printed as a table and written to
//! `results/bench-gateway.json`:
//!
//! - **intake**: authenticated withdrawal submissions per second (Ed25519 and HMAC
//!   request signing, policy, risk signals, durable commit, release to the ledger)
//!   against the cheapest authenticated endpoint (a signed `GET /v1/operations`),
//!   closed loop with 16 clients; and latency p50/p99 at a fixed 1,000 requests/s;
//! - **push latency**: from intake answering `pending` to an approver's event stream
//!   delivering it;
//! - **approval round trip** without the human: challenge, software-key signature
//!   through the CTAP2 layer, decision counted and the operation released;
//! - **push fan-out**: the same push latency with 500 approvers (each a person of
//!   their own, logged in with a software key) following the event stream;
//! - **scale**: with 10k, 100k and 1M stored operations (10% pending), p50/p99 of
//!   listing (newest page, pending page, a page deep in history), reading one
//!   operation and the approver's inbox, and this process's memory. The volume is
//!   copied in SQL from one real released and one real pending withdrawal
//!   (`countersign_gateway::demo::copy_operation`).
//!
//! On SQLite and on PostgreSQL (`COUNTERSIGN_TEST_POSTGRES`, or skipped with a note).
//! The load generator runs in the same process as the gateway (both cores shared),
//! over HTTPS on the loopback.
//!
//! `cargo run --release -p countersign-e2e --example bench_gateway [-- --quick]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

#[allow(dead_code, unused_imports)]
#[path = "../../crates/gateway/tests/gateway/support.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use countersign_client::Update;
use countersign_core::Decision;
use countersign_core::operation::SigningAlgorithm;
use serde_json::{Value, json};
use support::*;

const CLIENTS: usize = 16;

struct Figures {
    rows: Vec<Value>,
}

impl Figures {
    /// "{what}: p50" (with `detail`) and "{what}: p99" of sorted latencies.
    fn latency(&mut self, store: &str, what: &str, sorted: &[Duration], detail: Value) {
        self.add(store, &format!("{what}: p50"), percentile(sorted, 0.5), "ms", detail);
        self.add(store, &format!("{what}: p99"), percentile(sorted, 0.99), "ms", json!({}));
    }

    fn add(&mut self, store: &str, what: &str, value: f64, unit: &str, extra: Value) {
        println!("{store:<10} {what:<44} {value:>10.1} {unit:<6} {extra}");
        self.rows
            .push(json!({"store": store, "measure": what, "value": value, "unit": unit, "detail": extra}));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn bench_policy() -> countersign_core::Policy {
    let mut p = policy();
    // Throughput, not budgets: no velocity limits, so small withdrawals release at
    // once; anything worth $10,000 or more waits for one trader.
    p.velocity.clear();
    p.withdrawal_tiers[0].quorum = quorum(&[("traders", 1)]);
    p
}

/// Closed loop: `CLIENTS` tasks send as fast as answers come, for `secs`.
async fn closed_loop(gw: &Arc<Gateway>, key: &Arc<TestKey>, secs: f64, intake: bool) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (gw, key, stop, ok, failed) =
                (gw.clone(), key.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = if intake {
                        gw.withdraw(&key, &eth("0.01")).await
                    } else {
                        gw.send(&key, "GET", "/v1/operations?limit=1", b"", &[]).await
                    };
                    if r.status < 300 {
                        ok.fetch_add(1, Ordering::Relaxed)
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed)
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    (ok.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(), failed.load(Ordering::Relaxed))
}

/// Open loop: `per_s` submissions a second for `secs`. Latencies of the accepted
/// ones and of the refused ones (admission control: `503 intake.busy`), sorted, and
/// the rate actually offered.
async fn fixed_rate(
    gw: &Arc<Gateway>,
    key: &Arc<TestKey>,
    per_s: u32,
    secs: f64,
) -> (Vec<Duration>, Vec<Duration>, f64) {
    let n = (secs * f64::from(per_s)) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_s);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tick.tick().await;
        let (gw, key) = (gw.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = gw.withdraw(&key, &eth("0.01")).await;
            (t.elapsed(), r.status < 300)
        }));
    }
    // What was actually offered: the spawning loop's own pace.
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let (mut ok, mut refused) = (Vec::with_capacity(n), Vec::new());
    for t in tasks {
        let (d, accepted) = t.await.unwrap();
        if accepted { ok.push(d) } else { refused.push(d) }
    }
    ok.sort();
    refused.sort();
    (ok, refused, rate)
}

async fn run(db: Db, name: &str, secs: f64, rounds: usize, f: &mut Figures) {
    let gw = Arc::new(Gateway::start_tls_for_load(db, bench_policy()).await);
    let ed =
        Arc::new(gw.api_key("key_ed", KeySpec { allow: vec!["127.0.0.0/8"], ..KeySpec::default() }).await);
    let hm = Arc::new(
        gw.api_key("key_hmac", KeySpec { algorithm: SigningAlgorithm::HmacSha256, ..KeySpec::default() })
            .await,
    );
    // Warm connections and caches.
    closed_loop(&gw, &ed, 0.5, false).await;

    let (base, _) = closed_loop(&gw, &ed, secs, false).await;
    f.add(name, "baseline: signed GET /v1/operations", base, "req/s", json!({"clients": CLIENTS}));
    for (label, key) in [("intake, Ed25519-signed", &ed), ("intake, HMAC-signed", &hm)] {
        let (rate, failed) = closed_loop(&gw, key, secs, true).await;
        f.add(
            name,
            label,
            rate,
            "req/s",
            json!({"clients": CLIENTS, "failed": failed, "of_baseline": rate / base}),
        );
    }
    for per_s in [100, 1000] {
        let (lat, refused, rate) = fixed_rate(&gw, &ed, per_s, secs).await;
        let what = format!("intake at {per_s} req/s offered");
        let detail = json!({
            "offered_per_s": rate.round(), "accepted": lat.len(), "refused": refused.len(),
            "refused_p99_ms": percentile(&refused, 0.99),
        });
        f.latency(name, &what, &lat, detail);
        if !refused.is_empty() {
            let share = refused.len() as f64 / (refused.len() + lat.len()) as f64;
            f.add(name, &format!("{what}: refused at once (503 intake.busy)"), 100.0 * share, "%", json!({}));
            f.add(name, &format!("{what}: refusal p99"), percentile(&refused, 0.99), "ms", json!({}));
        }
        // Let a backlog drain before the next measurement.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // An approver, logged in through the client with a software key, following events.
    let alice = approver(&gw, "alice").await;
    let mut events = alice.0.events(&alice.1, None);
    let mut push = Vec::with_capacity(rounds);
    let mut round_trips = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let r = gw.withdraw(&ed, &eth("5")).await;
        let answered = Instant::now();
        assert_eq!(r.state(), "pending", "{r:?}");
        let id = r.op_id();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("event in time") {
                Some(Update::Event(e))
                    if e.event == "operation.pending" && e.data["operation"] == id.as_str() =>
                {
                    push.push(answered.elapsed());
                    break;
                }
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
        let t = Instant::now();
        let challenge = alice.0.challenge(&alice.1, &id, Decision::Approve).await.unwrap();
        let out =
            alice.0.sign_decision(&alice.1, challenge, None, alice.2.clone(), &ceremony()).await.unwrap();
        round_trips.push(t.elapsed());
        assert_eq!(out["state"], "released");
    }
    push.sort();
    round_trips.sort();
    f.latency(name, "push latency, 1 approver", &push, json!({"n": push.len()}));
    f.latency(name, "approval round trip (softkey)", &round_trips, json!({"n": round_trips.len()}));
}

/// Push latency to many approvers at once: each a person of their own (a stream
/// limit applies per person), each following the event stream on its own
/// connection; latency from intake's answer to each stream's delivery.
async fn fanout(db: Db, name: &str, approvers: usize, rounds: usize, f: &mut Figures) {
    let gw = Arc::new(Gateway::start_tls_for_load(db, bench_policy()).await);
    let ed = gw.api_key("key_ed", KeySpec::default()).await;
    let started = Instant::now();
    let mut streams = Vec::with_capacity(approvers);
    // One software key holds every approver's credential: a key of one's own each
    // would only add key generation to the setup.
    let key = soft_key();
    for i in 0..approvers {
        let id = format!("trader{i:03}");
        let link = countersign_client::EnrollmentLink::parse(&link(&gw, &id).await).unwrap();
        let client = countersign_client::Client::for_link(&link).unwrap();
        client.enroll(&link.code, "bench key", key.clone(), &ceremony()).await.unwrap();
        let session = client.login(&id, key.clone(), &ceremony()).await.unwrap();
        streams.push(client.events(&session, None));
    }
    println!(
        "{name:<10} ({approvers} approvers enrolled and logged in in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let delivered = Arc::new(std::sync::Mutex::new(Vec::<(String, Instant)>::new()));
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut events| {
            let delivered = delivered.clone();
            tokio::spawn(async move {
                let mut seen = 0;
                while seen < rounds {
                    match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
                        Ok(Some(Update::Event(e))) if e.event == "operation.pending" => {
                            let at = Instant::now();
                            let op = e.data["operation"].as_str().unwrap_or_default().to_owned();
                            delivered.lock().unwrap().push((op, at));
                            seen += 1;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            })
        })
        .collect();
    // Every stream connected before the first withdrawal.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut answered = std::collections::HashMap::new();
    for _ in 0..rounds {
        let r = gw.withdraw(&ed, &eth("5")).await;
        answered.insert(r.op_id(), Instant::now());
        assert_eq!(r.state(), "pending", "{r:?}");
        let want = answered.len() * approvers;
        let wait = Instant::now();
        while delivered.lock().unwrap().len() < want && wait.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let delivered = delivered.lock().unwrap();
    let mut lat: Vec<Duration> = delivered
        .iter()
        .filter_map(|(op, at)| answered.get(op).map(|a| at.saturating_duration_since(*a)))
        .collect();
    lat.sort();
    let missing = rounds * approvers - lat.len();
    let detail =
        json!({"approvers": approvers, "rounds": rounds, "deliveries": lat.len(), "missing": missing});
    f.latency(name, &format!("push latency, {approvers} approvers"), &lat, detail);
}

/// This process's resident memory now and at its peak (kB → MB), from /proc.
fn memory_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Latencies (sorted) of `samples` requests made by `one(i)`; each must succeed.
async fn sample<F, Fut>(samples: usize, mut one: F) -> Vec<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let t = Instant::now();
        let r = one(i).await;
        lat.push(t.elapsed());
        assert!(r.status < 300, "{r:?}");
    }
    lat.sort();
    lat
}

/// Listing and reading with a growing store: one row per size.
async fn scale(db: Db, name: &str, sizes: &[i64], samples: usize, f: &mut Figures) {
    let gw = Arc::new(Gateway::start_tls_for_load(db, bench_policy()).await);
    let ed = gw.api_key("key_ed", KeySpec::default()).await;
    let released = gw.withdraw(&ed, &eth("0.01")).await;
    assert_eq!(released.state(), "released", "{released:?}");
    let pending = gw.withdraw(&ed, &eth("5")).await;
    assert_eq!(pending.state(), "pending", "{pending:?}");
    let (alice, session, _) = approver(&gw, "alice").await;
    let (mut released_n, mut pending_n) = (0i64, 0i64);
    let day = 86_400;
    for &size in sizes {
        // 90% released, 10% pending, both spread over the same span of time.
        let t = Instant::now();
        let add_released = size * 9 / 10 - released_n;
        let add_pending = size / 10 - pending_n;
        for (template, prefix, first, count, spacing) in [
            (released.op_id(), "op_r", released_n, add_released, 1),
            (pending.op_id(), "op_p", pending_n, add_pending, 9),
        ] {
            let mut done = 0;
            while done < count {
                let chunk = (count - done).min(100_000);
                countersign_gateway::demo::copy_operation(
                    &gw.state,
                    &template,
                    prefix,
                    first + done,
                    chunk,
                    spacing,
                    30 * day,
                )
                .await
                .unwrap();
                done += chunk;
            }
        }
        released_n += add_released;
        pending_n += add_pending;
        let analyze = sqlx::query("ANALYZE").execute(gw.state.store.pool()).await;
        analyze.unwrap();
        let seeded_s = t.elapsed().as_secs_f64();
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM operations")
            .fetch_one(gw.state.store.pool())
            .await
            .unwrap();
        let (rest, _) = memory_mb();
        let label = |what: &str| format!("{size} stored: {what}");
        let detail = json!({"size": size, "stored": stored, "pending": pending_n + 1, "seeded_s": seeded_s});
        println!(
            "{name:<10} ({stored} operations stored, {} pending; copied in {seeded_s:.1} s)",
            pending_n + 1
        );

        let deep = data_encoding::BASE64URL_NOPAD
            .encode(format!("{}:", gw.now().unix() - (size * 9 / 10) / 2).as_bytes());
        let measures: Vec<(&str, String)> = vec![
            ("list newest 50", "/v1/operations?limit=50".into()),
            ("list pending 50", "/v1/operations?state=pending&limit=50".into()),
            ("list 50, halfway back", format!("/v1/operations?limit=50&cursor={deep}")),
        ];
        for (what, path) in &measures {
            let lat = sample(samples, |_| gw.send(&ed, "GET", path, b"", &[])).await;
            f.latency(name, &label(what), &lat, detail.clone());
        }
        let lat = sample(samples, |i| {
            let path = format!("/v1/operations/op_r{}", (i as i64 * 7919) % released_n.max(1));
            let (gw, ed) = (gw.clone(), &ed);
            async move { gw.send(ed, "GET", &path, b"", &[]).await }
        })
        .await;
        f.latency(name, &label("read one"), &lat, json!({"size": size}));
        let mut inbox = Vec::with_capacity(samples);
        for _ in 0..samples {
            let t = Instant::now();
            let items = alice.pending(&session).await.unwrap();
            inbox.push(t.elapsed());
            assert!(!items.is_empty());
        }
        inbox.sort();
        f.latency(name, &label("approver inbox (first 200)"), &inbox, json!({"size": size}));
        // Intake reads the key's and the account's withdrawals of the last 30 days
        // (velocity and the risk baseline), and every copy here is within them.
        let small = eth("0.01");
        let lat = sample(samples.min(10), |_| gw.withdraw(&ed, &small)).await;
        f.latency(name, &label("intake, same key and account"), &lat, json!({"size": size}));
        let (now, peak) = memory_mb();
        f.add(
            name,
            &label("memory at rest"),
            rest,
            "MB",
            json!({"size": size, "of": "bench process (gateway + clients)"}),
        );
        f.add(name, &label("memory after load"), now, "MB", json!({"size": size, "peak_mb": peak}));
    }
}

/// For a profiler (`scripts/bench --profile`, under callgrind): SQLite, one client,
/// `n` Ed25519-signed withdrawals one after another, released at intake.
async fn profile_intake(n: usize) {
    let gw = Gateway::start_tls_for_load(Db::Sqlite, bench_policy()).await;
    let ed = gw.api_key("key_ed", KeySpec::default()).await;
    for _ in 0..n {
        let r = gw.withdraw(&ed, &eth("0.01")).await;
        assert_eq!(r.state(), "released", "{r:?}");
    }
    println!("profile: {n} withdrawals taken in");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var("BENCH_ONLY").is_ok_and(|o| o.split(',').any(|p| p == "profile")) {
        profile_intake(300).await;
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let (secs, rounds) = if quick { (2.0, 30) } else { (10.0, 200) };
    // Fewer rounds than the per-key pending cap (20): each round leaves one pending.
    let (approvers, fan_rounds) = if quick { (100, 5) } else { (500, 15) };
    let sizes: &[i64] = if quick { &[10_000, 100_000] } else { &[10_000, 100_000, 1_000_000] };
    let samples = if quick { 50 } else { 200 };
    let mut f = Figures { rows: Vec::new() };
    println!("{:<10} {:<44} {:>10} {:<6} detail", "store", "measure", "value", "unit");
    let pg_up = std::net::TcpStream::connect("127.0.0.1:5432").is_ok()
        || std::env::var_os("COUNTERSIGN_TEST_POSTGRES").is_some();
    let mut stores = vec![(Db::Sqlite, "sqlite")];
    if pg_up {
        stores.push((Db::Postgres, "postgresql"));
    } else {
        println!("postgresql: skipped (no server at 127.0.0.1:5432 and COUNTERSIGN_TEST_POSTGRES unset)");
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    for (db, name) in &stores {
        if wanted("gateway") {
            run(*db, name, secs, rounds, &mut f).await;
        }
        if wanted("fanout") {
            fanout(*db, name, approvers, fan_rounds, &mut f).await;
        }
        if wanted("scale") {
            scale(*db, name, sizes, samples, &mut f).await;
        }
    }
    println!("\nsummary:");
    for r in &f.rows {
        println!(
            "{:<10} {:<44} {:>10.1} {}",
            r["store"].as_str().unwrap_or(""),
            r["measure"].as_str().unwrap_or(""),
            r["value"].as_f64().unwrap_or(f64::NAN),
            r["unit"].as_str().unwrap_or("")
        );
    }
    std::fs::create_dir_all("results").unwrap();
    let out = json!({ "benchmark": "gateway", "quick": quick, "parts": only, "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "results": f.rows });
    std::fs::write("results/bench-gateway.json", serde_json::to_string_pretty(&out).unwrap() + "\n").unwrap();
    println!("written: results/bench-gateway.json");
}
