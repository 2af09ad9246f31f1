//! Benchmark: how fast approvals verify, against the machine's limit, in one run.
//!
//! Pre-generates real approval assertions (software key through the CTAP2 layer,
//! clientDataJSON with the `countersign` member), then counts verifications per
//! second on one core:
//! - `webauthn-rs`: the gateway's verifier (`finish_attested_passkey_authentication`:
//!   JSON parsing, challenge/origin/type/rpIdHash/flags, then ECDSA);
//! - `p256` (RustCrypto): the raw ECDSA P-256 verification alone, the library
//!   webauthn-rs uses;
//! - `ring`: raw ECDSA P-256 verification with assembly, the fastest available here.
//!
//! Run with `scripts/bench` (release build). Prints a table and writes
//! `results/bench-verify.json`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A benchmark reads the clock: that is its job (clippy.toml bans it elsewhere).
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_keys::{Ceremony, Pin, PinRequest, Prompt};
use countersign_softkey::SoftKey;
use p256::ecdsa::signature::Verifier;
use sha2::{Digest, Sha256};
use webauthn_rs::WebauthnBuilder;
use webauthn_rs::prelude::{AttestationCaList, Credential, Url, Uuid};

const ORIGIN: &str = "https://countersign.example";
const ASSERTIONS: usize = 64;
const SECONDS: f64 = 2.0;

#[derive(Debug)]
struct Typist;
impl Prompt for Typist {
    fn choose_key(&self, _: &[countersign_keys::KeyInfo]) -> Option<usize> {
        Some(0)
    }
    fn pin(&self, _: &PinRequest) -> Option<Pin> {
        Some(Pin::new("4821".into()))
    }
    fn confirm_last_retry(&self) -> bool {
        false
    }
    fn touch(&self) {}
    fn processing(&self) {}
}

/// Run `f` repeatedly for about `SECONDS`; operations per second.
fn rate(mut f: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < Duration::from_secs_f64(SECONDS) {
        n += f();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rp =
        WebauthnBuilder::new("countersign.example", &Url::parse(ORIGIN).unwrap()).unwrap().build().unwrap();
    let trust = AttestationCaList::try_from(countersign_softkey::dev_ca_pem().unwrap().as_bytes()).unwrap();
    let key = SoftKey::new("bench").unwrap();
    key.set_pin("4821").unwrap();
    let ceremony = Ceremony::new(Arc::new(Typist));
    let (options, state) =
        rp.start_attested_passkey_registration(Uuid::new_v4(), "b", "B", None, trust, None).unwrap();
    let reg = countersign_keys::register(key.clone(), &ceremony, options.public_key, ORIGIN).await.unwrap();
    let passkey = rp.finish_attested_passkey_registration(&reg, &state).unwrap();
    let internals: Credential = passkey.clone().into();
    let webauthn_rs::prelude::COSEKeyType::EC_EC2(ec) = &internals.cred.key else { panic!("not EC2") };
    let sec1: Vec<u8> = [&[4u8][..], &ec.x[..], &ec.y[..]].concat();

    println!("generating {ASSERTIONS} approval assertions through the CTAP2 layer…");
    let mut cases = Vec::new();
    for i in 0..ASSERTIONS {
        let (options, state) =
            rp.start_attested_passkey_authentication(std::slice::from_ref(&passkey)).unwrap();
        let cdj = serde_json::to_vec(&serde_json::json!({
            "type": "webauthn.get",
            "challenge": data_encoding::BASE64URL_NOPAD.encode(&options.public_key.challenge),
            "origin": ORIGIN, "crossOrigin": false,
            "countersign": {"v": 1, "op": format!("op_bench{i:04}"), "digest": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA", "decision": "approve"},
        }))
        .unwrap();
        let a = countersign_keys::sign(key.clone(), &ceremony, options.public_key, cdj).await.unwrap();
        rp.finish_attested_passkey_authentication(&a, &state).expect("valid");
        cases.push((a, state));
    }
    let raw: Vec<(Vec<u8>, Vec<u8>)> = cases
        .iter()
        .map(|(a, _)| {
            let msg =
                [a.response.authenticator_data.as_slice(), &Sha256::digest(&a.response.client_data_json)]
                    .concat();
            (msg, a.response.signature.clone())
        })
        .collect();

    let p256_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    let ring_key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, sec1.clone());

    let webauthn = rate(|| {
        for (a, s) in &cases {
            assert!(rp.finish_attested_passkey_authentication(a, s).is_ok());
        }
        cases.len()
    });
    let rustcrypto = rate(|| {
        for (msg, sig) in &raw {
            let sig = p256::ecdsa::DerSignature::try_from(sig.as_slice()).unwrap();
            assert!(p256_key.verify(msg, &sig).is_ok());
        }
        raw.len()
    });
    let ring_rate = rate(|| {
        for (msg, sig) in &raw {
            assert!(ring_key.verify(msg, sig).is_ok());
        }
        raw.len()
    });

    println!("\napproval verification, one core, {ASSERTIONS} distinct assertions, {SECONDS} s each");
    println!("{:<44} {:>12} {:>14}", "verifier", "per second", "vs ring raw");
    for (name, r) in [
        ("webauthn-rs (the gateway's full check)", webauthn),
        ("p256 raw ECDSA verify (RustCrypto)", rustcrypto),
        ("ring raw ECDSA verify (machine limit)", ring_rate),
    ] {
        println!("{name:<44} {r:>12.0} {:>13.0}%", 100.0 * r / ring_rate);
    }
    let json = serde_json::json!({
        "benchmark": "approval-verification",
        "assertions": ASSERTIONS,
        "seconds_each": SECONDS,
        "per_second": {"webauthn_rs": webauthn, "p256_raw": rustcrypto, "ring_raw": ring_rate},
        "webauthn_rs_vs_ring": webauthn / ring_rate,
    });
    std::fs::create_dir_all("results").unwrap();
    std::fs::write("results/bench-verify.json", serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    println!("\nwritten to results/bench-verify.json");
}
