//! Try your security key with Countersign's key code, without a gateway.
//!
//! ```text
//! cargo run -p countersign-keys --features usb --example keys -- list
//! cargo run -p countersign-keys --features usb --example keys -- try
//! cargo run -p countersign-keys --features usb --example keys -- try --soft   # software key
//! ```
//!
//! `try` enrolls the key with a relying party inside this process (`webauthn-rs`,
//! the gateway's verifier), then signs an approval whose clientDataJSON carries the
//! `countersign` member, and verifies it. Nothing is stored.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;

use countersign_keys::Ceremony;
use webauthn_rs::WebauthnBuilder;
use webauthn_rs::prelude::{AttestationCaList, Url, Uuid};

const ORIGIN: &str = "https://countersign.example";

#[path = "common/terminal.rs"]
mod terminal;
use terminal::{Terminal, describe};

fn relying_party() -> Result<webauthn_rs::Webauthn, String> {
    WebauthnBuilder::new("countersign.example", &Url::parse(ORIGIN).map_err(|e| e.to_string())?)
        .and_then(|b| b.build())
        .map_err(|e| format!("{e:?}"))
}

async fn enroll<T: countersign_keys::Token + 'static>(
    rp: &webauthn_rs::Webauthn,
    token: T,
    trust: AttestationCaList,
) -> Result<webauthn_rs::prelude::AttestedPasskey, String> {
    println!("Enrolling (PIN, then touch)…");
    let (options, state) = rp
        .start_attested_passkey_registration(Uuid::new_v4(), "you", "You", None, trust, None)
        .map_err(|e| format!("{e:?}"))?;
    let ceremony = Ceremony::new(Arc::new(Terminal));
    let credential = countersign_keys::register(token, &ceremony, options.public_key, ORIGIN)
        .await
        .map_err(|e| e.to_string())?;
    let passkey = rp
        .finish_attested_passkey_registration(&credential, &state)
        .map_err(|e| format!("attestation refused: {e:?}"))?;
    println!("Enrolled; attestation verified.");
    Ok(passkey)
}

async fn approve<T: countersign_keys::Token + 'static>(
    rp: &webauthn_rs::Webauthn,
    token: T,
    passkey: webauthn_rs::prelude::AttestedPasskey,
) -> Result<(), String> {
    println!("Signing an approval (PIN, then touch)…");
    let (options, state) =
        rp.start_attested_passkey_authentication(&[passkey]).map_err(|e| format!("{e:?}"))?;
    let client_data = serde_json::to_vec(&serde_json::json!({
        "type": "webauthn.get",
        "challenge": data_encoding::BASE64URL_NOPAD.encode(&options.public_key.challenge),
        "origin": ORIGIN,
        "crossOrigin": false,
        "countersign": {"v": 1, "op": "op_example", "digest": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA", "decision": "approve"},
    }))
    .map_err(|e| e.to_string())?;
    let ceremony = Ceremony::new(Arc::new(Terminal));
    let assertion = countersign_keys::sign(token, &ceremony, options.public_key, client_data)
        .await
        .map_err(|e| e.to_string())?;
    let result =
        rp.finish_attested_passkey_authentication(&assertion, &state).map_err(|e| format!("{e:?}"))?;
    println!(
        "Verified: user verified = {}, signature counter = {}.",
        result.user_verified(),
        result.counter()
    );
    Ok(())
}

async fn try_soft() -> Result<(), String> {
    println!("Using a SOFTWARE key (countersign-softkey): NOT a security key. Its PIN is 4821.");
    let key = countersign_softkey::SoftKey::new("example").map_err(|e| e.to_string())?;
    key.set_pin("4821").map_err(|e| e.to_string())?;
    let pem = countersign_softkey::dev_ca_pem().map_err(|e| e.to_string())?;
    let trust = AttestationCaList::try_from(pem.as_bytes()).map_err(|e| format!("{e:?}"))?;
    let rp = relying_party()?;
    let passkey = enroll(&rp, key.clone(), trust).await?;
    approve(&rp, key, passkey).await
}

async fn try_usb() -> Result<(), String> {
    // Trusts Yubico's roots, as the gateway's `yubikey` preset does.
    let mut trust = AttestationCaList::default();
    for pem in [
        include_bytes!("../../gateway/attestation/yubico-u2f-root-ca-serial-457200631.pem").as_slice(),
        include_bytes!("../../gateway/attestation/yubico-fido-root-450203556.pem").as_slice(),
        include_bytes!("../../gateway/attestation/yubico-attestation-root-1.pem").as_slice(),
    ] {
        trust.union(&AttestationCaList::try_from(pem).map_err(|e| format!("{e:?}"))?);
    }
    let rp = relying_party()?;
    let (token, info) = countersign_keys::usb::choose(&Terminal).await.map_err(|e| e.to_string())?;
    println!("Using {}", describe(&info));
    let passkey = enroll(&rp, token, trust).await?;
    let (token, _) = countersign_keys::usb::choose(&Terminal).await.map_err(|e| e.to_string())?;
    approve(&rp, token, passkey).await
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let soft = args.iter().any(|a| a == "--soft");
    let outcome = match args.first().map(String::as_str) {
        Some("list") => countersign_keys::usb::keys().await.map_err(|e| e.to_string()).map(|keys| {
            if keys.is_empty() {
                println!("No FIDO key found on USB (on Linux, see docs/keys.md for hidraw access).");
            }
            for (_, k) in keys {
                println!("{}", describe(&k));
            }
        }),
        Some("try") if soft => try_soft().await,
        Some("try") => try_usb().await,
        _ => Err("usage: keys list | keys try [--soft]".into()),
    };
    if let Err(e) = outcome {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
