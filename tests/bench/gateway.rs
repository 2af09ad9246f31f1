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
//!   through the CTAP2 layer, decision counted and the operation released.
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

/// Open loop: `per_s` submissions a second for `secs`; latencies of each.
async fn fixed_rate(
    gw: &Arc<Gateway>,
    key: &Arc<TestKey>,
    per_s: u32,
    secs: f64,
) -> (Vec<Duration>, u64, f64) {
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
    let mut lat = Vec::with_capacity(n);
    let mut failed = 0;
    for t in tasks {
        let (d, ok) = t.await.unwrap();
        if ok { lat.push(d) } else { failed += 1 }
    }
    lat.sort();
    (lat, failed, rate)
}

async fn run(db: Db, name: &str, secs: f64, rounds: usize, f: &mut Figures) {
    let gw = Arc::new(Gateway::start_tls_with(db, bench_policy()).await);
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
        let (lat, failed, rate) = fixed_rate(&gw, &ed, per_s, secs).await;
        let what = format!("intake at {per_s} req/s offered");
        let detail = json!({"offered_per_s": rate.round(), "failed": failed, "answered": lat.len()});
        f.add(name, &format!("{what}: p50"), percentile(&lat, 0.5), "ms", detail);
        f.add(name, &format!("{what}: p99"), percentile(&lat, 0.99), "ms", json!({}));
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
    f.add(name, "push latency, 1 approver: p50", percentile(&push, 0.5), "ms", json!({"n": push.len()}));
    f.add(name, "push latency, 1 approver: p99", percentile(&push, 0.99), "ms", json!({}));
    f.add(
        name,
        "approval round trip (softkey): p50",
        percentile(&round_trips, 0.5),
        "ms",
        json!({"n": round_trips.len()}),
    );
    f.add(name, "approval round trip (softkey): p99", percentile(&round_trips, 0.99), "ms", json!({}));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (secs, rounds) = if quick { (2.0, 30) } else { (10.0, 200) };
    let mut f = Figures { rows: Vec::new() };
    println!("{:<10} {:<44} {:>10} {:<6} detail", "store", "measure", "value", "unit");
    run(Db::Sqlite, "sqlite", secs, rounds, &mut f).await;
    let pg_up = std::net::TcpStream::connect("127.0.0.1:5432").is_ok()
        || std::env::var_os("COUNTERSIGN_TEST_POSTGRES").is_some();
    if pg_up {
        run(Db::Postgres, "postgresql", secs, rounds, &mut f).await;
    } else {
        println!("postgresql: skipped (no server at 127.0.0.1:5432 and COUNTERSIGN_TEST_POSTGRES unset)");
    }
    println!("\nsummary (errors logged above are the overload at 1,000 req/s):");
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
    let out = json!({ "benchmark": "gateway", "quick": quick, "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "results": f.rows });
    std::fs::write("results/bench-gateway.json", serde_json::to_string_pretty(&out).unwrap() + "\n").unwrap();
    println!("written: results/bench-gateway.json");
}
