//! Benchmark: how fast approvals verify, against the machine's limit, in one run.
//!
//! Pre-generates real approval assertions (software key through the CTAP2 layer,
//! clientDataJSON with the `countersign` member), then counts verifications per
//! second on one core:
//! - `webauthn-rs`: the gateway's verifier (`finish_attested_passkey_authentication`:
//!   clientDataJSON parsing, challenge/origin/type/rpIdHash/flags, then ECDSA), from
//!   the JSON body as the gateway receives it, and from the parsed structure;
//! - `p256` (RustCrypto): the raw ECDSA P-256 verification alone, the library
//!   webauthn-rs uses;
//! - `ring`: raw ECDSA P-256 verification with assembly, the fastest available here;
//! - raw Ed25519 verification (ed25519-dalek, ring) for reference: webauthn-rs 0.6
//!   cannot verify EdDSA assertions at all (its `COSEKey` refuses OKP keys), so the
//!   gateway accepts ES256 only.
//!
//! It also writes the assertions to `results/assertions.json` so that the peer
//! libraries (`tests/bench/peers/`) verify exactly the same ones.
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
use data_encoding::BASE64URL_NOPAD as B64;
use p256::ecdsa::signature::Verifier;
use sha2::{Digest, Sha256};
use webauthn_rs::WebauthnBuilder;
use webauthn_rs::prelude::{AttestationCaList, Credential, PublicKeyCredential, Url, Uuid};

const ORIGIN: &str = "https://countersign.example";
const RP_ID: &str = "countersign.example";
const ASSERTIONS: usize = 64;

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

/// Run `f` repeatedly for about `seconds`; operations per second.
fn rate(seconds: f64, mut f: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        n += f();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = if std::env::args().any(|a| a == "--quick") { 1.0 } else { 3.0 };
    let rp = WebauthnBuilder::new(RP_ID, &Url::parse(ORIGIN).unwrap()).unwrap().build().unwrap();
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
        let challenge = options.public_key.challenge.to_vec();
        let cdj = serde_json::to_vec(&serde_json::json!({
            "type": "webauthn.get",
            "challenge": B64.encode(&challenge),
            "origin": ORIGIN, "crossOrigin": false,
            "countersign": {"v": 1, "op": format!("op_bench{i:04}"), "digest": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA", "decision": "approve"},
        }))
        .unwrap();
        let a = countersign_keys::sign(key.clone(), &ceremony, options.public_key, cdj).await.unwrap();
        rp.finish_attested_passkey_authentication(&a, &state).expect("valid");
        let body = serde_json::to_string(&a).unwrap();
        cases.push((a, body, state, challenge));
    }
    export(&internals.cred_id, &ec.x, &ec.y, &cases);
    let raw: Vec<(Vec<u8>, Vec<u8>)> = cases
        .iter()
        .map(|(a, ..)| {
            let msg =
                [a.response.authenticator_data.as_slice(), &Sha256::digest(&a.response.client_data_json)]
                    .concat();
            (msg, a.response.signature.clone())
        })
        .collect();

    let p256_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    let ring_key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, sec1.clone());

    // As the gateway receives it: the JSON body, parsed, then verified.
    let webauthn_json = rate(seconds, || {
        for (_, body, s, _) in &cases {
            let a: PublicKeyCredential = serde_json::from_str(body).unwrap();
            assert!(rp.finish_attested_passkey_authentication(&a, s).is_ok());
        }
        cases.len()
    });
    let webauthn = rate(seconds, || {
        for (a, _, s, _) in &cases {
            assert!(rp.finish_attested_passkey_authentication(a, s).is_ok());
        }
        cases.len()
    });
    let rustcrypto = rate(seconds, || {
        for (msg, sig) in &raw {
            let sig = p256::ecdsa::DerSignature::try_from(sig.as_slice()).unwrap();
            assert!(p256_key.verify(msg, &sig).is_ok());
        }
        raw.len()
    });
    let ring_rate = rate(seconds, || {
        for (msg, sig) in &raw {
            assert!(ring_key.verify(msg, sig).is_ok());
        }
        raw.len()
    });
    // EdDSA, raw: the same messages signed with an Ed25519 key.
    let ed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let ed_pub = ed.verifying_key();
    let ed_sigs: Vec<_> =
        raw.iter().map(|(msg, _)| (msg, ed25519_dalek::Signer::sign(&ed, msg).to_bytes())).collect();
    let ed_dalek = rate(seconds, || {
        for (msg, sig) in &ed_sigs {
            assert!(ed_pub.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig)).is_ok());
        }
        ed_sigs.len()
    });
    let ed_ring_key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, ed_pub.to_bytes());
    let ed_ring = rate(seconds, || {
        for (msg, sig) in &ed_sigs {
            assert!(ed_ring_key.verify(msg, sig).is_ok());
        }
        ed_sigs.len()
    });

    println!("\napproval verification, one core, {ASSERTIONS} distinct assertions, {seconds} s each");
    println!("{:<52} {:>12} {:>14}", "verifier", "per second", "vs ring raw");
    for (name, r) in [
        ("webauthn-rs, from the JSON body (the gateway's check)", webauthn_json),
        ("webauthn-rs, from the parsed structure", webauthn),
        ("p256 raw ECDSA P-256 verify (RustCrypto)", rustcrypto),
        ("ring raw ECDSA P-256 verify (machine limit)", ring_rate),
        ("ed25519-dalek raw Ed25519 verify (strict)", ed_dalek),
        ("ring raw Ed25519 verify", ed_ring),
    ] {
        println!("{name:<52} {r:>12.0} {:>13.0}%", 100.0 * r / ring_rate);
    }
    let json = serde_json::json!({
        "benchmark": "approval-verification",
        "assertions": ASSERTIONS,
        "seconds_each": seconds,
        "per_second": {
            "webauthn_rs_json": webauthn_json, "webauthn_rs": webauthn, "p256_raw": rustcrypto,
            "ring_raw": ring_rate, "ed25519_dalek_raw": ed_dalek, "ring_ed25519_raw": ed_ring,
        },
        "webauthn_rs_vs_ring": webauthn_json / ring_rate,
    });
    std::fs::create_dir_all("results").unwrap();
    std::fs::write("results/bench-verify.json", serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    println!("\nwritten to results/bench-verify.json");
}

/// The assertions, as the peers' benchmarks read them (`tests/bench/peers/`): the
/// credential (id and COSE public key) and, for each assertion, its challenge and the
/// JSON body the authenticator's client produced.
fn export(cred_id: &[u8], x: &[u8], y: &[u8], cases: &[(PublicKeyCredential, String, impl Sized, Vec<u8>)]) {
    // COSE_Key (RFC 9052): {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}.
    let mut cose = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20];
    cose.extend_from_slice(x);
    cose.extend_from_slice(&[0x22, 0x58, 0x20]);
    cose.extend_from_slice(y);
    let json = serde_json::json!({
        "rp_id": RP_ID,
        "origin": ORIGIN,
        "credential_id": B64.encode(cred_id),
        "public_key_cose": B64.encode(&cose),
        "assertions": cases.iter().map(|(_, body, _, challenge)| serde_json::json!({
            "challenge": B64.encode(challenge),
            "credential": serde_json::from_str::<serde_json::Value>(body).unwrap(),
        })).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all("results").unwrap();
    std::fs::write("results/assertions.json", serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}
