//! Try a YubiKey's PIV application with Countersign's PIV code, without a gateway.
//!
//! ```text
//! cargo run -p countersign-keys --features piv --example piv -- list
//! cargo run -p countersign-keys --features piv --example piv -- try   # WIPES slot 9c
//! ```
//!
//! `try` generates a P-256 key in slot 9c (PIN-always, touch-always), checks its
//! attestation against Yubico's PIV root, signs a test approval with PIN and touch,
//! and verifies the signature. Nothing is stored.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "common/terminal.rs"]
mod terminal;

use countersign_core::{Decision, Digest};
use countersign_keys::Pin;
use countersign_keys::piv::{self, ManagementKey, PivKey};
use terminal::{Terminal, ask};

fn main() {
    let result = match std::env::args().nth(1).as_deref() {
        Some("list") => list(),
        Some("try") => try_key(),
        _ => Err("usage: piv list | piv try".into()),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn list() -> Result<(), String> {
    let readers = piv::readers().map_err(|e| e.to_string())?;
    if readers.is_empty() {
        println!("No smart-card readers (is the key plugged in and pcscd running?).");
    }
    for name in readers {
        match PivKey::open(Some(&name)) {
            Ok(mut key) => println!(
                "{name}: serial {} firmware {} PIN retries {}",
                key.serial(),
                key.firmware(),
                key.pin_retries().map_or_else(|e| e.to_string(), |n| n.to_string())
            ),
            Err(e) => println!("{name}: {e}"),
        }
    }
    Ok(())
}

fn try_key() -> Result<(), String> {
    let mut key = PivKey::open(None).map_err(|e| e.to_string())?;
    println!("Using serial {} firmware {}.", key.serial(), key.firmware());
    if ask("This replaces the key in slot 9c. Type 'wipe 9c' to continue: ").as_deref() != Some("wipe 9c") {
        return Err("not confirmed".into());
    }
    let hex = rpassword::prompt_password("Management key (hex): ").map_err(|e| e.to_string())?;
    let mgm = ManagementKey::from_hex(&hex).map_err(|e| e.to_string())?;
    let pin = rpassword::prompt_password("PIN: ").map_err(|e| e.to_string())?;
    println!("Generating the key; touch it if it blinks.");
    let enrolled = key.enroll(&mgm, &Pin::new(pin)).map_err(|e| e.to_string())?;
    let roots = piv::certificates_from_pem(piv::YUBICO_PIV_ROOT_PEM).map_err(|e| e.to_string())?;
    let attested = piv::verify_attestation(&enrolled.attestation, &enrolled.intermediate, &roots)
        .map_err(|e| e.to_string())?;
    println!(
        "Attested by {}: serial {}, firmware {:?}, PIN and touch always.",
        attested.root, attested.serial, attested.firmware
    );
    let digest = Digest::of_canonical(b"countersign piv try");
    let challenge = [0x5a; 32];
    let sig =
        key.sign_approval(&Terminal, &digest, Decision::Approve, &challenge).map_err(|e| e.to_string())?;
    countersign_core::piv::verify(&enrolled.public_key, &digest, Decision::Approve, &challenge, &sig)
        .map_err(|e| e.to_string())?;
    println!("Signed and verified a test approval ({} bytes).", sig.len());
    Ok(())
}
