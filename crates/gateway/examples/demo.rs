//! The Countersign demo in a terminal: a real gateway (HTTP on 127.0.0.1, SQLite in
//! a temporary directory), a trading bot signing requests with its API key, and two
//! approvers deciding with **software** authenticators (demo only) through the same
//! WebAuthn ceremonies a YubiKey goes through. The founding people sign the genesis
//! of the authority chain, and settlement verifies the release offline from its hash.
//!
//! Run with `./scripts/demo` (or `cargo run -p countersign-gateway --example demo`).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use countersign_core::binding::{ApprovalBinding, client_data_json};
use countersign_core::operation::Role;
use countersign_core::release::verify_release_from_genesis;
use countersign_core::{Decision, canonical};
use countersign_gateway::clock::SystemClock;
use countersign_gateway::config::Config;
use countersign_gateway::{AppState, approvers, serve};
use countersign_keys::Ceremony;
use countersign_softkey::SoftKey;
use data_encoding::BASE64URL_NOPAD;
use serde_json::{Value, json};
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};

const ORIGIN: &str = "https://localhost";

struct Person {
    name: &'static str,
    token: SoftKey,
    session: String,
}

async fn post(http: &reqwest::Client, url: String, bearer: Option<&str>, body: Value) -> Value {
    let mut req = http.post(url).json(&body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().json().await.unwrap()
}

fn say(step: &str) {
    println!("\n\x1b[1m== {step}\x1b[0m");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "\x1b[1mCountersign demo\x1b[0m — gateway + bot + approvers in one terminal (the desktop app is not built yet)."
    );
    println!(
        "\x1b[41;97m SOFTWARE AUTHENTICATORS IN USE — demo only; real approvers use hardware keys \x1b[0m"
    );

    // A gateway with the example policy, trusting the demo's software tokens.
    let dir = tempfile::tempdir().unwrap();
    let example = include_str!("../../../countersign.example.toml")
        .replace("data_dir = \"data\"", &format!("data_dir = {:?}", dir.path().display()))
        .replace("approvals.exchange.example", "localhost")
        .replace("attestation_presets = [\"yubikey\"]", "attestation_presets = [\"development\"]")
        .replace("enforced = true", "enforced = false");
    let config = Config::from_toml(&example, std::path::Path::new("countersign.example.toml")).unwrap();
    let state = AppState::open(config, Arc::new(SystemClock)).await.unwrap();
    let founders: [(&str, Role, &str); 4] = [
        ("alice", Role::Approver, "traders"),
        ("carol", Role::Approver, "traders"),
        ("bob", Role::Approver, "traders"),
        ("erin", Role::Admin, "admins"),
    ];
    let tokens: Vec<SoftKey> = founders
        .iter()
        .map(|(name, _, _)| name)
        .map(|name| {
            let key = SoftKey::new(&format!("{name}'s software key")).unwrap();
            key.set_pin(DEMO_PIN).unwrap();
            key
        })
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(serve(state.clone(), listener));
    let base = format!("http://{addr}");
    let http = countersign_gateway::release::http_client(std::time::Duration::from_secs(10)).unwrap();
    println!("gateway listening on {base} (SQLite in {})", dir.path().display());

    say("1. An API key for a trading bot: Ed25519, withdraw scope, allowed from 127.0.0.0/8, owned by bob");
    let now = state.clock.now();
    let embedded = countersign_gateway::demo::Embedded { state: state.clone(), base: base.clone() };
    let bot = countersign_gateway::demo::Bot::create(&embedded, "key_bot1").await.unwrap();

    say("2. The founding people enroll their keys with single-use codes, then log in (PIN + touch)");
    let mut people = Vec::new();
    for ((name, role, group), token) in founders.into_iter().zip(tokens) {
        let roles: BTreeSet<Role> = [role].into();
        let groups = [group.parse().unwrap()].into();
        let code = approvers::issue_enrollment_code(
            &state,
            &name.parse().unwrap(),
            name,
            &roles,
            &groups,
            None,
            now,
        )
        .await
        .unwrap();
        let start = post(&http, format!("{base}/v1/enroll/start"), None, json!({"code": code})).await;
        let options: CreationChallengeResponse = serde_json::from_value(start["options"].clone()).unwrap();
        let credential =
            countersign_keys::register(token.clone(), &ceremony(), options.public_key, ORIGIN).await.unwrap();
        let done = post(
            &http,
            format!("{base}/v1/enroll/finish"),
            None,
            json!({"ceremony": start["ceremony"], "label": "demo", "credential": credential}),
        )
        .await;
        let login = post(&http, format!("{base}/v1/login/start"), None, json!({"approver": name})).await;
        let options: RequestChallengeResponse = serde_json::from_value(login["options"].clone()).unwrap();
        let assertion =
            countersign_keys::sign_standard(token.clone(), &ceremony(), options.public_key, ORIGIN)
                .await
                .unwrap();
        let session = post(
            &http,
            format!("{base}/v1/login/finish"),
            None,
            json!({"ceremony": login["ceremony"], "credential": assertion}),
        )
        .await;
        println!(
            "   {name}: key {} {}, logged in",
            &done["credential_id"].as_str().unwrap()[..12],
            done["status"]
        );
        people.push(Person { name, token, session: session["token"].as_str().unwrap().to_owned() });
    }

    say("2b. Each founding key signs the genesis of the authority chain; settlement pins its hash");
    let genesis = countersign_gateway::authority::draft(&state, now).await.unwrap().hash;
    let client = countersign_client::Client::new(&base, None).unwrap();
    for p in &people {
        let session = countersign_client::Session::new(p.session.clone());
        let done =
            client.sign_genesis(&session, p.name, &genesis, p.token.clone(), &ceremony()).await.unwrap();
        println!("   {} signed{}", p.name, if done.sealed { ": sealed" } else { "" });
    }
    println!("   genesis \x1b[1m{genesis}\x1b[0m");

    say("3. The bot withdraws 0.5 ETH ($1,500): below every threshold");
    let dest = "0x8ba1f109551bD432803012645Ac136ddd64DBA72";
    let r = bot.withdraw("ETH", "0.5", dest, "order-1").await.unwrap();
    println!("   -> {} (verdict {})", r["state"], r["verdict"]["verdict"]);

    say("4. The bot withdraws 12.5 ETH ($37,500): held for two traders");
    let r = bot.withdraw("ETH", "12.5", dest, "order-2").await.unwrap();
    let op_id = r["operation"]["id"].as_str().unwrap().to_owned();
    println!("   -> {} {op_id}, quorum {}", r["state"], r["verdict"]["quorum"]["groups"]);
    println!(
        "   fingerprint \x1b[1m{}\x1b[0m (approvers compare it on a second channel)",
        r["fingerprint"].as_str().unwrap()
    );

    say("5. A man in the middle shows alice 1.25 ETH: her key signs what she saw, the gateway refuses it");
    let challenge = |session: String| {
        let (http, url) = (http.clone(), format!("{base}/v1/operations/{op_id}/challenge"));
        async move { post(&http, url, Some(&session), json!({"decision": "approve"})).await }
    };
    let c = challenge(people[0].session.clone()).await;
    println!("   approvers see the risk signals: {}", c["operation"]["risk"]);
    let mut shown = canonical::decode(c["operation"]["canonical"].as_str().unwrap().as_bytes()).unwrap();
    if let countersign_core::Action::Withdrawal(w) = &mut shown.action {
        w.amount = "1.25".parse().unwrap();
    }
    let outcome = sign_and_send(&http, &base, &op_id, &mut people[0], &c, &shown).await;
    println!("   -> refused: {} — {}", outcome["error"]["code"], outcome["error"]["message"]);

    say("6. alice and carol approve what the gateway really holds");
    for person in people.iter_mut().take(2) {
        let c = challenge(person.session.clone()).await;
        let op = canonical::decode(c["operation"]["canonical"].as_str().unwrap().as_bytes()).unwrap();
        let outcome = sign_and_send(&http, &base, &op_id, person, &c, &op).await;
        println!("   {} approves -> {}", person.name, outcome["state"]);
    }

    say(
        "7. Settlement verifies the release offline from the pinned genesis: the chain, the policy, both key signatures",
    );
    let entry = state.store.ledger().await.unwrap().into_iter().find(|l| l.operation_id == op_id).unwrap();
    let gateway_key = state.keys.verifying_key();
    let authority = client.verified_authority(&genesis).await.unwrap();
    match verify_release_from_genesis(
        &serde_json::to_vec(&entry.certificate).unwrap(),
        &gateway_key,
        &authority,
    ) {
        Ok(op) => println!("   -> verified: move {} now", op.id),
        Err(e) => println!("   -> REFUSED: {e}"),
    }

    say("8. A thief with the stolen key tries small withdrawals ($2,400 each) to stay under the threshold");
    let (mut released, mut held) = (0, 0);
    for n in 0..14 {
        let r = bot
            .withdraw(
                "ETH",
                "0.8",
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                &format!("order-{}", 100 + n),
            )
            .await
            .unwrap();
        if r["state"] == "released" { released += 1 } else { held += 1 }
    }
    println!("   -> {released} released, {held} held for approval: this key's $25,000/hour budget is spent");

    say("9. carol breaks the glass: one touch freezes every API key");
    let f = post(&http, format!("{base}/v1/freeze/challenge"), Some(&people[1].session), json!({})).await;
    let options: RequestChallengeResponse = serde_json::from_value(f["options"].clone()).unwrap();
    let assertion =
        countersign_keys::sign_standard(people[1].token.clone(), &ceremony(), options.public_key, ORIGIN)
            .await
            .unwrap();
    post(
        &http,
        format!("{base}/v1/freeze"),
        Some(&people[1].session),
        json!({"ceremony": f["ceremony"], "credential": assertion, "reason": "demo"}),
    )
    .await;
    let r = bot.withdraw("ETH", "0.1", dest, "order-999").await.unwrap();
    println!("   bot -> {}", r["error"]["code"]);

    say("10. The audit chain verifies (and names the first broken entry if anyone edits it)");
    let export = state.store.audit_export().await.unwrap();
    let s = countersign_core::audit::verify_export(&export, &gateway_key).unwrap();
    println!("   -> {} entries, head {}", s.entries, &s.head[..16]);
    println!(
        "\nDone. Everything above ran over real HTTP against the real gateway; see README.md for the two commands."
    );
}

const DEMO_PIN: &str = "4821";

/// The demo's approvers at their software keys: the PIN is typed for them (through
/// the same PIN protocol a USB key speaks) and the touch is immediate.
fn ceremony() -> Ceremony {
    countersign_softkey::SimulatedPerson::new(DEMO_PIN).ceremony()
}

async fn sign_and_send(
    http: &reqwest::Client,
    base: &str,
    op_id: &str,
    who: &mut Person,
    challenge: &Value,
    shown: &countersign_core::Operation,
) -> Value {
    let options: RequestChallengeResponse = serde_json::from_value(challenge["options"].clone()).unwrap();
    let binding = ApprovalBinding::new(shown, Decision::Approve).unwrap();
    let cdj =
        client_data_json(&BASE64URL_NOPAD.encode(&options.public_key.challenge), ORIGIN, &binding).unwrap();
    let credential =
        countersign_keys::sign(who.token.clone(), &ceremony(), options.public_key, cdj).await.unwrap();
    post(
        http,
        format!("{base}/v1/operations/{op_id}/decisions"),
        Some(&who.session),
        json!({"ceremony": challenge["ceremony"], "credential": credential}),
    )
    .await
}
