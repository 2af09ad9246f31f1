//! YubiKey PIV end to end over real PC/SC: `pcscd` with the `vsmartcard-vpcd`
//! reader driver, and a software PIV card (`countersign-softkey`, feature `piv`)
//! plugged into it. `countersign-keys` talks to it through the `yubikey` crate
//! exactly as to a YubiKey: enroll (generate 9c, attest), verify the attestation,
//! sign approvals, and the PIN, touch and management-key failures.
//!
//! Skipped, with the reason printed, only where pcscd or vpcd is not installed
//! (`scripts/setup` installs both).
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use countersign_core::{Decision, Digest, piv};
use countersign_keys::piv::{
    ManagementKey, PivKey, YUBICO_PIV_ROOT_PEM, certificates_from_pem, verify_attestation,
};
use countersign_keys::{Error, Pin};
use countersign_softkey::piv::{DEFAULT_MANAGEMENT_KEY_HEX, DEFAULT_PIN, SoftPivCard, piv_test_root_pem};

use crate::Person;

const READER: &str = "Virtual PCD 00 00";
const VPCD_CONF: &str = "/etc/reader.conf.d/vpcd";

/// A pcscd this test started (stopped on drop), or none when one was running.
#[derive(Debug)]
struct Pcscd(Option<Child>);

impl Drop for Pcscd {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn pcscd() -> Result<Pcscd, String> {
    let found = |p: &str| std::path::Path::new(p).exists();
    if !found("/usr/sbin/pcscd") {
        return Err("pcscd is not installed (apt install pcscd)".into());
    }
    if !found(VPCD_CONF) {
        return Err(format!("vsmartcard-vpcd is not installed ({VPCD_CONF} is missing)"));
    }
    if std::net::TcpStream::connect("127.0.0.1:35963").is_ok() {
        return Err("a vpcd reader is already in use on 127.0.0.1:35963 (another card is plugged in)".into());
    }
    if found("/run/pcscd/pcscd.comm") && countersign_keys::piv::readers().is_ok() {
        return Ok(Pcscd(None)); // a running pcscd (with vpcd loaded) will do
    }
    let child = Command::new("/usr/sbin/pcscd")
        .arg("--foreground")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("pcscd could not start: {e}"))?;
    Ok(Pcscd(Some(child)))
}

fn open_when_ready() -> PivKey {
    for _ in 0..100 {
        if let Ok(key) = PivKey::open(Some(READER)) {
            return key;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the software card never appeared in {READER}");
}

#[test]
fn piv_enrolls_attests_and_signs_approvals_over_pcsc() {
    let _pcscd = match pcscd() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: YubiKey PIV over PC/SC: {why}");
            return;
        }
    };
    let card = SoftPivCard::new(19_283_746).unwrap();
    let touch = card.touch();
    card.plug_into_vpcd("127.0.0.1:35963".parse().unwrap()).expect("vpcd accepts the card");
    let mut key = open_when_ready();
    assert_eq!(key.serial(), 19_283_746);
    assert_eq!(key.firmware(), "5.7.1");

    // A wrong management key is refused by the card, not guessed around.
    let wrong = ManagementKey::from_hex(&"0f".repeat(24)).unwrap();
    let err = key.enroll(&wrong, &Pin::new(DEFAULT_PIN.into())).unwrap_err();
    assert_eq!(err.code(), "key.management_key_refused", "{err}");

    // Enroll: a fresh P-256 key in 9c, PIN-always and touch-always, attested.
    let mgm = ManagementKey::from_hex(DEFAULT_MANAGEMENT_KEY_HEX).unwrap();
    let enrolled = key.enroll(&mgm, &Pin::new(DEFAULT_PIN.into())).unwrap();
    assert_eq!(enrolled.public_key.len(), 65);
    let test_root = certificates_from_pem(&piv_test_root_pem().unwrap()).unwrap();
    let attested = verify_attestation(&enrolled.attestation, &enrolled.intermediate, &test_root).unwrap();
    assert_eq!(attested.serial, 19_283_746, "the serial comes from the signed attestation");
    assert_eq!(attested.firmware, [5, 7, 1]);
    assert_eq!(attested.public_key, enrolled.public_key, "the attested key is the enrolled key");

    // Only Yubico's root trusted: the software card's chain is refused.
    let yubico = certificates_from_pem(YUBICO_PIV_ROOT_PEM).unwrap();
    let err = verify_attestation(&enrolled.attestation, &enrolled.intermediate, &yubico).unwrap_err();
    assert!(err.to_string().contains("does not chain to a trusted root"), "{err}");
    // The attestation of one key cannot vouch for another's f9 chain order.
    let err = verify_attestation(&enrolled.intermediate, &enrolled.attestation, &test_root).unwrap_err();
    assert_eq!(err.code(), "key.attestation_refused", "{err}");

    // Sign an approval: PIN with retries shown, touch, a signature only for this
    // operation, decision and challenge.
    let digest = Digest::from_bytes([0x42; 32]);
    let challenge = [0x17; 32];
    let person = Person::typing(&[Some(DEFAULT_PIN)]);
    let sig = key.sign_approval(&*person, &digest, Decision::Approve, &challenge).unwrap();
    assert_eq!(person.seen(), ["pin retries=Some(3) wrong=false", "touch", "processing"]);
    assert_eq!(piv::verify(&enrolled.public_key, &digest, Decision::Approve, &challenge, &sig), Ok(()));
    assert_eq!(
        piv::verify(&enrolled.public_key, &digest, Decision::Reject, &challenge, &sig),
        Err(piv::PivError::BadSignature)
    );

    // A wrong PIN is asked again, with the retries left.
    let person = Person::typing(&[Some("000000"), Some(DEFAULT_PIN)]);
    let sig = key.sign_approval(&*person, &digest, Decision::Reject, &challenge).unwrap();
    assert_eq!(
        person.seen(),
        ["pin retries=Some(3) wrong=false", "pin retries=Some(2) wrong=true", "touch", "processing"]
    );
    assert_eq!(piv::verify(&enrolled.public_key, &digest, Decision::Reject, &challenge, &sig), Ok(()));

    // No touch: the card refuses, and says so.
    touch.set(false);
    let person = Person::typing(&[Some(DEFAULT_PIN)]);
    let err = key.sign_approval(&*person, &digest, Decision::Approve, &challenge).unwrap_err();
    assert_eq!(err.code(), "key.denied", "{err}");
    touch.set(true);

    // Cancelled at the PIN dialog.
    let err =
        key.sign_approval(&*Person::typing(&[None]), &digest, Decision::Approve, &challenge).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");

    // Two wrong PINs leave one retry: not spent without explicit confirmation ...
    let person = Person::typing(&[Some("000000"), Some("000000")]);
    let err = key.sign_approval(&*person, &digest, Decision::Approve, &challenge).unwrap_err();
    assert_eq!(err.code(), "key.pin_last_retry", "{err}");
    assert_eq!(person.seen().last().map(String::as_str), Some("last retry?"));
    assert_eq!(key.pin_retries().unwrap(), 1);
    // ... and spent wrongly with it, the PIN is blocked with a clear remedy.
    let person = Person::confirming(&[Some("000000")]);
    let err = key.sign_approval(&*person, &digest, Decision::Approve, &challenge).unwrap_err();
    assert_eq!(err.code(), "key.pin_blocked", "{err}");
    assert!(err.to_string().contains("PUK"), "{err}");
    let person = Person::typing(&[Some(DEFAULT_PIN)]);
    let err = key.sign_approval(&*person, &digest, Decision::Approve, &challenge).unwrap_err();
    assert_eq!(err.code(), "key.pin_blocked", "a blocked PIN stays blocked: {err}");
}
