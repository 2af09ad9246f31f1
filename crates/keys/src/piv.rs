//! YubiKey PIV over PC/SC (feature `piv`): the second key type.
//!
//! - [`PivKey::enroll`]: generate an ECDSA P-256 key in slot 9c with PIN-always and
//!   touch-always policies, and read its Yubico attestation (the slot's attestation
//!   certificate and the device's f9 intermediate).
//! - [`verify_attestation`]: check that chain against trusted roots (Yubico's PIV root
//!   is bundled as [`YUBICO_PIV_ROOT_PEM`]) and read serial, firmware and policies
//!   from Yubico's extensions; anything but PIN-always and touch-always is refused.
//! - [`PivKey::sign_approval`]: ask for the PIN through the [`Prompt`] (retries left,
//!   last retry confirmed), verify it, ask for the touch, and sign
//!   [`countersign_core::piv::message`] for one operation, decision and challenge.
//!
//! Everything here blocks on the card: call it from a blocking thread.

use std::fmt;

use countersign_core::piv::message;
use countersign_core::{Decision, Digest};
use x509_cert::Certificate;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode as _, Encode as _};
use yubikey::piv::{self, AlgorithmId, SlotId};
use yubikey::{MgmAlgorithmId, MgmKey, PinPolicy, TouchPolicy, YubiKey};
use zeroize::Zeroizing;

use crate::{Error, Pin, PinRequest, Prompt, Result};

/// Yubico's PIV attestation root ("Yubico PIV Root CA Serial 263751"), from
/// developers.yubico.com/PIV/Introduction/PIV_attestation.html. SHA-256
/// fingerprint 63:EC:E9:14:E5:4D:D8:79:15:F3:40:33:C8:5A:F4:C0:69:6B:A1:51:2F:8A:DD:66:CE:D7:38:33:12:07:B5:46.
pub const YUBICO_PIV_ROOT_PEM: &str = include_str!("../attestation/yubico-piv-root-ca-263751.pem");

const OID_FIRMWARE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.3");
const OID_SERIAL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.7");
const OID_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.8");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

/// PIN policy byte in Yubico's policy extension: the PIN for every signature.
const PIN_ALWAYS: u8 = 3;
/// Touch policy byte in Yubico's policy extension: a touch for every signature.
const TOUCH_ALWAYS: u8 = 2;

/// The PIV management key (24 bytes: AES-192 on firmware 5.7 and later, 3DES before;
/// 16 or 32 bytes: AES-128 or AES-256). `Debug` never shows it.
pub struct ManagementKey(Zeroizing<Vec<u8>>);

impl ManagementKey {
    /// From hex, as `ykman piv access change-management-key` prints it.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for anything but 32, 48 or 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<ManagementKey> {
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(hex.trim().as_bytes())
            .ok()
            .filter(|b| matches!(b.len(), 16 | 24 | 32))
            .ok_or_else(|| Error::InvalidRequest("a management key is 32, 48 or 64 hex digits".into()))?;
        Ok(ManagementKey(Zeroizing::new(bytes)))
    }

    fn for_card(&self, yk: &YubiKey) -> Result<MgmKey> {
        let alg = match self.0.len() {
            16 => MgmAlgorithmId::Aes128,
            32 => MgmAlgorithmId::Aes256,
            _ if (yk.version().major, yk.version().minor) >= (5, 7) => MgmAlgorithmId::Aes192,
            _ => MgmAlgorithmId::ThreeDes,
        };
        MgmKey::from_bytes(self.0.as_slice(), Some(alg))
            .map_err(|_| Error::InvalidRequest("the management key is weak or has the wrong length".into()))
    }
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ManagementKey(<redacted>)")
    }
}

/// What enrollment reads from the card: send all of it to the gateway, which runs
/// [`verify_attestation`] before it trusts the key.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct PivEnrollment {
    /// The new slot-9c public key, SEC1 uncompressed (65 bytes).
    pub public_key: Vec<u8>,
    /// Slot 9c's attestation certificate (DER), signed by the f9 key.
    pub attestation: Vec<u8>,
    /// The device's attestation intermediate from slot f9 (DER), signed by Yubico.
    pub intermediate: Vec<u8>,
    /// The serial number the card reports.
    pub serial: u32,
    /// The firmware version the card reports.
    pub firmware: String,
}

impl fmt::Debug for PivEnrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivEnrollment")
            .field("serial", &self.serial)
            .field("firmware", &self.firmware)
            .field("attestation_bytes", &self.attestation.len())
            .finish_non_exhaustive()
    }
}

/// What a verified attestation proves about the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PivAttestation {
    /// Device serial number (from the attestation, not from the card's say-so).
    pub serial: u32,
    /// Firmware major, minor, patch.
    pub firmware: [u8; 3],
    /// The attested public key, SEC1 uncompressed.
    pub public_key: Vec<u8>,
    /// Subject of the root that anchors the chain.
    pub root: String,
}

/// A YubiKey (or any card speaking Yubico's PIV extensions) in a PC/SC reader.
pub struct PivKey {
    yk: YubiKey,
}

impl fmt::Debug for PivKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivKey")
            .field("reader", &self.yk.name())
            .field("serial", &self.yk.serial().0)
            .field("firmware", &self.yk.version().to_string())
            .finish()
    }
}

fn pcsc_unavailable(e: &yubikey::Error) -> Error {
    Error::Device(format!("PC/SC is not available (is pcscd running?): {e}"))
}

/// Names of the PC/SC readers.
///
/// # Errors
/// [`Error::Device`] when PC/SC is not available.
pub fn readers() -> Result<Vec<String>> {
    let mut ctx = yubikey::reader::Context::open().map_err(|e| pcsc_unavailable(&e))?;
    let iter = ctx.iter().map_err(|e| pcsc_unavailable(&e))?;
    Ok(iter.map(|r| r.name().into_owned()).collect())
}

impl PivKey {
    /// Open the PIV application on the card in `reader` (exact name), or on the only
    /// card present when `reader` is `None`.
    ///
    /// # Errors
    /// [`Error::NoKey`] when no card answers; [`Error::Device`] without PC/SC.
    pub fn open(reader: Option<&str>) -> Result<PivKey> {
        let yk = match reader {
            None => YubiKey::open().map_err(|e| match e {
                yubikey::Error::PcscError { .. } => pcsc_unavailable(&e),
                _ => Error::NoKey,
            })?,
            Some(name) => {
                let mut ctx = yubikey::reader::Context::open().map_err(|e| pcsc_unavailable(&e))?;
                let mut iter = ctx.iter().map_err(|e| pcsc_unavailable(&e))?;
                let reader = iter.find(|r| r.name() == name).ok_or(Error::NoKey)?;
                reader.open().map_err(|_| Error::NoKey)?
            }
        };
        Ok(PivKey { yk })
    }

    /// The serial number the card reports.
    #[must_use]
    pub fn serial(&self) -> u32 {
        self.yk.serial().0
    }

    /// The firmware version the card reports.
    #[must_use]
    pub fn firmware(&self) -> String {
        self.yk.version().to_string()
    }

    /// PIN retries left.
    ///
    /// # Errors
    /// Card errors.
    pub fn pin_retries(&mut self) -> Result<u8> {
        self.yk.get_pin_retries().map_err(device)
    }

    /// Generate the approval key in slot 9c (replacing what is there) with
    /// PIN-always and touch-always policies, and read its attestation.
    ///
    /// # Errors
    /// [`Error::ManagementKeyRefused`], PIN errors, card errors.
    pub fn enroll(&mut self, management_key: &ManagementKey, pin: &Pin) -> Result<PivEnrollment> {
        let mgm = management_key.for_card(&self.yk)?;
        self.yk.authenticate(&mgm).map_err(|e| match e {
            yubikey::Error::AuthenticationError => Error::ManagementKeyRefused,
            other => device(other),
        })?;
        self.verify_pin(pin)?;
        let spki = piv::generate(
            &mut self.yk,
            SlotId::Signature,
            AlgorithmId::EccP256,
            PinPolicy::Always,
            TouchPolicy::Always,
        )
        .map_err(device)?;
        let public_key = spki.subject_public_key.raw_bytes().to_vec();
        let attestation = piv::attest(&mut self.yk, SlotId::Signature).map_err(device)?.to_vec();
        let intermediate = yubikey::certificate::Certificate::read(&mut self.yk, SlotId::Attestation)
            .map_err(device)?
            .cert
            .to_der()
            .map_err(|e| Error::Device(format!("f9 certificate: {e}")))?;
        Ok(PivEnrollment {
            public_key,
            attestation,
            intermediate,
            serial: self.serial(),
            firmware: self.firmware(),
        })
    }

    /// Sign an approval or rejection: PIN (asked through `prompt`, with retries left;
    /// the last retry only after explicit confirmation), then touch, then the
    /// signature over [`countersign_core::piv::message`]. Returns DER ECDSA.
    ///
    /// # Errors
    /// [`Error::Cancelled`], [`Error::WrongPin`] is retried, [`Error::PivPinBlocked`],
    /// [`Error::LastRetryNotConfirmed`], [`Error::Denied`] (no touch), card errors.
    pub fn sign_approval(
        &mut self,
        prompt: &dyn Prompt,
        digest: &Digest,
        decision: Decision,
        challenge: &[u8; 32],
    ) -> Result<Vec<u8>> {
        let mut previous_attempt_wrong = false;
        loop {
            let retries = self.pin_retries()?;
            match retries {
                0 => return Err(Error::PivPinBlocked),
                1 if !prompt.confirm_last_retry() => return Err(Error::LastRetryNotConfirmed),
                _ => {}
            }
            let request = PinRequest { retries_left: Some(u32::from(retries)), previous_attempt_wrong };
            let pin = prompt.pin(&request).ok_or(Error::Cancelled)?;
            match self.verify_pin(&pin) {
                Err(Error::WrongPin { .. }) => previous_attempt_wrong = true,
                other => {
                    other?;
                    break;
                }
            }
        }
        prompt.touch();
        let msg = message(digest, decision, challenge);
        let signature = piv::sign_data(&mut self.yk, &msg, AlgorithmId::EccP256, SlotId::Signature).map_err(
            |e| match e {
                // Security status not satisfied: no touch (or the PIN was not accepted).
                yubikey::Error::AuthenticationError => Error::Denied,
                other => device(other),
            },
        )?;
        prompt.processing();
        Ok(signature.to_vec())
    }

    fn verify_pin(&mut self, pin: &Pin) -> Result<()> {
        self.yk.verify_pin(pin.expose().as_bytes()).map_err(|e| match e {
            yubikey::Error::WrongPin { tries: 0 } | yubikey::Error::PinLocked => Error::PivPinBlocked,
            yubikey::Error::WrongPin { tries } => Error::WrongPin { retries_left: u32::from(tries) },
            other => device(other),
        })
    }
}

fn device(e: yubikey::Error) -> Error {
    match e {
        yubikey::Error::PcscError { .. } => Error::KeyRemoved,
        other => Error::Device(other.to_string()),
    }
}

fn bad(why: impl Into<String>) -> Error {
    Error::Attestation(why.into())
}

/// Parse PEM certificates (any number) into DER.
///
/// # Errors
/// [`Error::Attestation`] for text that is not PEM certificates.
pub fn certificates_from_pem(pem: &str) -> Result<Vec<Vec<u8>>> {
    let certs = Certificate::load_pem_chain(pem.as_bytes()).map_err(|e| bad(format!("PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no certificates in the PEM text"));
    }
    certs.iter().map(|c| c.to_der().map_err(|e| bad(format!("DER: {e}")))).collect()
}

/// Check a PIV attestation: `attestation` (slot 9c) is signed by `intermediate` (the
/// device's f9 certificate), which is signed by one of `roots` (DER). Then read
/// Yubico's extensions and require PIN-always and touch-always.
///
/// Validity periods are not judged: Yubico issues these certificates at manufacture
/// and at key generation with fixed dates, and their meaning does not expire.
///
/// # Errors
/// [`Error::Attestation`] naming the first check that failed.
pub fn verify_attestation(
    attestation: &[u8],
    intermediate: &[u8],
    roots: &[Vec<u8>],
) -> Result<PivAttestation> {
    let leaf =
        Certificate::from_der(attestation).map_err(|e| bad(format!("attestation certificate: {e}")))?;
    let inter = Certificate::from_der(intermediate).map_err(|e| bad(format!("f9 certificate: {e}")))?;
    check_signed_by(&leaf, &inter)
        .map_err(|e| bad(format!("the attestation is not signed by the f9 key: {e}")))?;
    let root = roots
        .iter()
        .filter_map(|der| Certificate::from_der(der).ok())
        .find(|root| {
            root.tbs_certificate().subject() == inter.tbs_certificate().issuer()
                && check_signed_by(&inter, root).is_ok()
        })
        .ok_or_else(|| bad("the f9 certificate does not chain to a trusted root"))?;

    let ext = |oid: ObjectIdentifier| {
        leaf.tbs_certificate()
            .extensions()
            .into_iter()
            .flatten()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes().to_vec())
    };
    let firmware: [u8; 3] = ext(OID_FIRMWARE)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("no firmware extension (1.3.6.1.4.1.41482.3.3)"))?;
    let serial = ext(OID_SERIAL)
        .and_then(|b| x509_cert::der::asn1::Uint::from_der(&b).ok())
        .and_then(|u| {
            let bytes = u.as_bytes();
            (bytes.len() <= 4).then(|| bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
        })
        .ok_or_else(|| bad("no serial extension (1.3.6.1.4.1.41482.3.7)"))?;
    let policy = ext(OID_POLICY).ok_or_else(|| bad("no policy extension (1.3.6.1.4.1.41482.3.8)"))?;
    match policy.as_slice() {
        [PIN_ALWAYS, TOUCH_ALWAYS] => {}
        [pin, touch] => {
            return Err(bad(format!(
                "the key must need the PIN and a touch for every signature (PIN policy {pin}, touch policy {touch}; \
                 need {PIN_ALWAYS} and {TOUCH_ALWAYS})"
            )));
        }
        _ => return Err(bad("malformed policy extension")),
    }
    let public_key = leaf.tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes().to_vec();
    p256::PublicKey::from_sec1_bytes(&public_key).map_err(|_| bad("the attested key is not a P-256 key"))?;
    Ok(PivAttestation { serial, firmware, public_key, root: root.tbs_certificate().subject().to_string() })
}

/// `cert`'s signature verifies with `issuer`'s public key (ECDSA P-256/SHA-256 or
/// RSA PKCS#1 v1.5/SHA-256, the two Yubico uses).
fn check_signed_by(cert: &Certificate, issuer: &Certificate) -> std::result::Result<(), String> {
    use p256::ecdsa::signature::Verifier as _;
    let tbs = cert.tbs_certificate().to_der().map_err(|e| e.to_string())?;
    let sig = cert.signature().raw_bytes();
    let spki = issuer.tbs_certificate().subject_public_key_info();
    let alg = cert.signature_algorithm().oid;
    if alg == OID_ECDSA_SHA256 {
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
            .map_err(|_| "the issuer key is not P-256".to_owned())?;
        let sig =
            p256::ecdsa::DerSignature::try_from(sig).map_err(|_| "malformed ECDSA signature".to_owned())?;
        key.verify(&tbs, &sig).map_err(|_| "bad ECDSA signature".to_owned())
    } else if alg == OID_RSA_SHA256 {
        use rsa::pkcs8::DecodePublicKey as _;
        let spki_der = spki.to_der().map_err(|e| e.to_string())?;
        let key = rsa::RsaPublicKey::from_public_key_der(&spki_der)
            .map_err(|_| "the issuer key is not RSA".to_owned())?;
        let key = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
        let sig =
            rsa::pkcs1v15::Signature::try_from(sig).map_err(|_| "malformed RSA signature".to_owned())?;
        key.verify(&tbs, &sig).map_err(|_| "bad RSA signature".to_owned())
    } else {
        Err(format!("unsupported signature algorithm {alg}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_bundled_yubico_root_verifies_its_own_rsa_signature() {
        let der = certificates_from_pem(YUBICO_PIV_ROOT_PEM).unwrap();
        let root = Certificate::from_der(&der[0]).unwrap();
        assert_eq!(root.tbs_certificate().subject().to_string(), "CN=Yubico PIV Root CA Serial 263751");
        assert_eq!(check_signed_by(&root, &root), Ok(()));
        // One flipped bit in the signed part and the RSA path refuses it.
        let mut tampered = der[0].clone();
        let i = tampered.len() / 3;
        tampered[i] ^= 1;
        let tampered = Certificate::from_der(&tampered).unwrap(); // a modulus byte: still parses
        assert_eq!(check_signed_by(&tampered, &root), Err("bad RSA signature".to_owned()));
    }

    #[test]
    fn management_keys_are_hex_of_a_known_length_and_never_printed() {
        assert!(ManagementKey::from_hex("0102").is_err());
        let k = ManagementKey::from_hex(&"01".repeat(24)).unwrap();
        assert_eq!(format!("{k:?}"), "ManagementKey(<redacted>)");
    }
}
