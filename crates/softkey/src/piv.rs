//! A SOFTWARE PIV card (feature `piv`) for testing `countersign-keys`' YubiKey PIV
//! path over real PC/SC: it connects to `vsmartcard-vpcd` (the virtual reader that
//! `pcscd` loads) with the `vpicc` crate and answers the APDUs the `yubikey` crate
//! sends, the way a YubiKey 5.7 does:
//!
//! SELECT, GET VERSION (`FD`), GET SERIAL (`F8`), management-key mutual
//! authentication with AES-192 (`87` on `9B`), VERIFY PIN (`20`, 3 retries, blocks at
//! zero), GENERATE ASYMMETRIC (`47`, P-256 only, PIN and touch policies), ATTEST
//! (`F9`), GET DATA (`CB`) for the f9 attestation certificate, GENERAL AUTHENTICATE
//! signing (`87` with `11`/`9C`), GET RESPONSE (`C0`) and command chaining.
//!
//! PIN-always means one signature per VERIFY; touch-always asks the [`Touch`]
//! switch, and without a touch the card answers "security status not satisfied".
//!
//! **WARNING:** its attestation chains to a test root whose key anyone can derive
//! ([`piv_test_root_pem`]). It proves nothing about a real key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aes::Aes192;
use aes::cipher::{BlockCipherDecrypt as _, BlockCipherEncrypt as _, KeyInit as _};
use crypto_glue::traits::{EncodeDer as _, EncodePem as _, LineEndingPem};
use crypto_glue::x509::{Builder as _, CertificateBuilder, Extension, ObjectIdentifier, OctetString};
use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use p256::ecdsa::{DerSignature, Signature, SigningKey};

use crate::attestation::{Profile, labelled_key, name, serial, spki, validity};
use crate::{Error, random};

/// The management key every YubiKey ships with (AES-192 from firmware 5.7).
pub const DEFAULT_MANAGEMENT_KEY_HEX: &str = "010203040506070801020304050607080102030405060708";
/// The PIN every YubiKey ships with.
pub const DEFAULT_PIN: &str = "123456";

const PIV_AID: [u8; 5] = [0xa0, 0x00, 0x00, 0x03, 0x08];
const ROOT_SUBJECT: &str = "CN=Countersign soft PIV test root - NOT FOR PRODUCTION,O=Countersign,C=ZZ";
const F9_SUBJECT: &str = "CN=Countersign soft PIV attestation - SOFTWARE,O=Countersign,C=ZZ";

const SW_OK: [u8; 2] = [0x90, 0x00];
const SW_SECURITY: [u8; 2] = [0x69, 0x82];
const SW_BLOCKED: [u8; 2] = [0x69, 0x83];
const SW_WRONG_DATA: [u8; 2] = [0x6a, 0x80];
const SW_NOT_FOUND: [u8; 2] = [0x6a, 0x82];
const SW_BAD_P1P2: [u8; 2] = [0x6a, 0x86];
const SW_NO_INS: [u8; 2] = [0x6d, 0x00];

/// Whether the simulated person touches the card when it asks. Shared with the test.
#[derive(Debug, Clone)]
pub struct Touch(Arc<AtomicBool>);

impl Touch {
    /// Touch (`true`) or do not touch (`false`) from now on.
    pub fn set(&self, touches: bool) {
        self.0.store(touches, Ordering::SeqCst);
    }
}

struct SlotKey {
    key: SigningKey,
    pin_policy: u8,
    touch_policy: u8,
}

/// The software PIV card.
pub struct SoftPivCard {
    serial: u32,
    version: [u8; 3],
    management_key: [u8; 24],
    pin: Vec<u8>,
    pin_retries: u8,
    pin_verified: bool,
    expected_witness: Option<[u8; 16]>,
    management_authenticated: bool,
    slot_9c: Option<SlotKey>,
    f9_key: SigningKey,
    f9_cert: Vec<u8>,
    chained: Vec<u8>,
    pending: Vec<u8>,
    touch: Touch,
}

impl std::fmt::Debug for SoftPivCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftPivCard").field("serial", &self.serial).finish_non_exhaustive()
    }
}

fn root_key() -> Result<SigningKey, Error> {
    labelled_key("countersign soft PIV test root v1")
}

/// The root the soft card's attestation chains to, PEM. Trust it only in tests.
///
/// # Errors
/// Certificate building failed (a bug).
pub fn piv_test_root_pem() -> Result<String, Error> {
    let key = root_key()?;
    let profile =
        Profile { issuer: name(ROOT_SUBJECT)?, subject: name(ROOT_SUBJECT)?, ca: true, extra: vec![] };
    let cert = CertificateBuilder::new(profile, serial(0x10)?, validity()?, spki(&key)?)
        .and_then(|b| b.build::<SigningKey, DerSignature>(&key))
        .map_err(|_| Error::Crypto("PIV root certificate"))?;
    cert.to_pem(LineEndingPem::LF).map_err(|_| Error::Crypto("PEM encoding"))
}

impl SoftPivCard {
    /// A fresh card with factory PIN and management key, reporting firmware 5.7.1.
    ///
    /// # Errors
    /// Certificate building failed (a bug).
    pub fn new(serial_number: u32) -> Result<SoftPivCard, Error> {
        let f9_key = labelled_key(&format!("countersign soft PIV f9 key {serial_number}"))?;
        let root = root_key()?;
        let profile =
            Profile { issuer: name(ROOT_SUBJECT)?, subject: name(F9_SUBJECT)?, ca: true, extra: vec![] };
        let f9_cert = CertificateBuilder::new(profile, serial(0x11)?, validity()?, spki(&f9_key)?)
            .and_then(|b| b.build::<SigningKey, DerSignature>(&root))
            .map_err(|_| Error::Crypto("f9 certificate"))?
            .to_der()
            .map_err(|_| Error::Crypto("DER encoding"))?;
        let mut management_key = [0u8; 24];
        for (i, b) in management_key.iter_mut().enumerate() {
            *b = u8::try_from(i % 8 + 1).unwrap_or(0);
        }
        Ok(SoftPivCard {
            serial: serial_number,
            version: [5, 7, 1],
            management_key,
            pin: DEFAULT_PIN.as_bytes().to_vec(),
            pin_retries: 3,
            pin_verified: false,
            expected_witness: None,
            management_authenticated: false,
            slot_9c: None,
            f9_key,
            f9_cert,
            chained: Vec::new(),
            pending: Vec::new(),
            touch: Touch(Arc::new(AtomicBool::new(true))),
        })
    }

    /// The switch that decides whether the simulated person touches the card.
    #[must_use]
    pub fn touch(&self) -> Touch {
        self.touch.clone()
    }

    /// Plug the card into vpcd at `addr` (`127.0.0.1:35963` for the first reader)
    /// and answer it on a thread until the connection drops. Retries the connection
    /// for up to 10 s while pcscd starts.
    ///
    /// # Errors
    /// vpcd did not accept a connection.
    pub fn plug_into_vpcd(
        mut self,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let mut last = None;
        for _ in 0..100 {
            match vpicc::connect_socket(addr) {
                Ok(conn) => {
                    return Ok(std::thread::spawn(move || {
                        // Ends when pcscd goes away.
                        let _ = conn.run(&mut self);
                    }));
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("vpcd did not answer")))
    }

    fn respond(&mut self, mut data: Vec<u8>) -> Vec<u8> {
        if data.len() <= 256 {
            data.extend(SW_OK);
            return data;
        }
        self.pending = data.split_off(256);
        let left = u8::try_from(self.pending.len().min(255)).unwrap_or(255);
        data.extend([0x61, left]);
        data
    }

    fn aes(&self) -> Option<Aes192> {
        Aes192::new_from_slice(&self.management_key).ok()
    }

    fn management_auth(&mut self, p1: u8, data: &[u8]) -> Vec<u8> {
        if p1 != 0x0a {
            return SW_BAD_P1P2.to_vec(); // only AES-192 is configured
        }
        let Some(aes) = self.aes() else { return SW_WRONG_DATA.to_vec() };
        match data {
            // Step 1: the host asks for a witness.
            [0x7c, 0x02, 0x80, 0x00] => {
                let Ok(sent) = random::<16>() else { return SW_SECURITY.to_vec() };
                let mut expected = aes::Block::from(sent);
                aes.decrypt_block(&mut expected);
                self.expected_witness = Some(expected.into());
                let mut out = vec![0x7c, 0x12, 0x80, 0x10];
                out.extend(sent);
                self.respond(out)
            }
            // Step 2: the decrypted witness and the host's challenge.
            [0x7c, 0x24, 0x80, 0x10, rest @ ..]
                if rest.len() == 16 + 2 + 16 && rest[16..18] == [0x81, 0x10] =>
            {
                let expected = self.expected_witness.take();
                if expected.map(|w| w[..] == rest[..16]) != Some(true) {
                    self.management_authenticated = false;
                    return SW_SECURITY.to_vec();
                }
                self.management_authenticated = true;
                let mut block = aes::Block::default();
                block.copy_from_slice(&rest[18..]);
                aes.encrypt_block(&mut block);
                let mut out = vec![0x7c, 0x12, 0x82, 0x10];
                out.extend_from_slice(&block);
                self.respond(out)
            }
            _ => SW_WRONG_DATA.to_vec(),
        }
    }

    fn verify(&mut self, data: &[u8]) -> Vec<u8> {
        if self.pin_retries == 0 {
            return SW_BLOCKED.to_vec();
        }
        if data.is_empty() {
            return if self.pin_verified { SW_OK.to_vec() } else { vec![0x63, 0xc0 | self.pin_retries] };
        }
        let typed: Vec<u8> = data.iter().copied().take_while(|b| *b != 0xff).collect();
        if typed == self.pin {
            self.pin_retries = 3;
            self.pin_verified = true;
            SW_OK.to_vec()
        } else {
            self.pin_retries -= 1;
            self.pin_verified = false;
            if self.pin_retries == 0 { SW_BLOCKED.to_vec() } else { vec![0x63, 0xc0 | self.pin_retries] }
        }
    }

    fn generate(&mut self, p2: u8, data: &[u8]) -> Vec<u8> {
        if !self.management_authenticated {
            return SW_SECURITY.to_vec();
        }
        if p2 != 0x9c {
            return SW_BAD_P1P2.to_vec();
        }
        // AC len 80 01 alg [AA 01 pin] [AB 01 touch]
        let (mut alg, mut pin_policy, mut touch_policy) = (0, 2, 1);
        if data.len() < 2 || data[0] != 0xac {
            return SW_WRONG_DATA.to_vec();
        }
        for tlv in data[2..].chunks(3) {
            match tlv {
                [0x80, 1, v] => alg = *v,
                [0xaa, 1, v] => pin_policy = *v,
                [0xab, 1, v] => touch_policy = *v,
                _ => return SW_WRONG_DATA.to_vec(),
            }
        }
        if alg != 0x11 {
            return SW_WRONG_DATA.to_vec();
        }
        let Ok(secret) = random::<32>() else { return SW_SECURITY.to_vec() };
        let Ok(key) = SigningKey::from_slice(&secret) else { return SW_SECURITY.to_vec() };
        let point = key.verifying_key().to_sec1_point(false);
        let mut out = vec![0x7f, 0x49, 0x43, 0x86, 0x41];
        out.extend_from_slice(point.as_bytes());
        self.slot_9c = Some(SlotKey { key, pin_policy, touch_policy });
        self.respond(out)
    }

    fn attest(&mut self, p1: u8) -> Vec<u8> {
        let Some(slot) = (p1 == 0x9c).then_some(()).and(self.slot_9c.as_ref()) else {
            return SW_NOT_FOUND.to_vec();
        };
        let ext = |oid: &str, value: Vec<u8>| -> Option<Extension> {
            Some(Extension {
                extn_id: ObjectIdentifier::new(oid).ok()?,
                critical: false,
                extn_value: OctetString::new(value).ok()?,
            })
        };
        let serial_der = crypto_glue::der::asn1::Uint::new(&self.serial.to_be_bytes())
            .and_then(|u| crypto_glue::der::Encode::to_der(&u))
            .unwrap_or_default();
        let extra = [
            ext("1.3.6.1.4.1.41482.3.3", self.version.to_vec()),
            ext("1.3.6.1.4.1.41482.3.7", serial_der),
            ext("1.3.6.1.4.1.41482.3.8", vec![slot.pin_policy, slot.touch_policy]),
        ];
        let Some(extra) = extra.into_iter().collect::<Option<Vec<_>>>() else { return SW_SECURITY.to_vec() };
        let cert = (|| {
            let profile = Profile {
                issuer: name(F9_SUBJECT)?,
                subject: name("CN=YubiKey PIV Attestation 9c")?,
                ca: false,
                extra,
            };
            let pk = crypto_glue::x509::SubjectPublicKeyInfoOwned::from_key(slot.key.verifying_key())
                .map_err(|_| Error::Crypto("public key info"))?;
            CertificateBuilder::new(profile, serial(0x9c)?, validity()?, pk)
                .and_then(|b| b.build::<SigningKey, DerSignature>(&self.f9_key))
                .map_err(|_| Error::Crypto("attestation certificate"))?
                .to_der()
                .map_err(|_| Error::Crypto("DER encoding"))
        })();
        match cert {
            Ok(der) => self.respond(der),
            Err(_) => SW_SECURITY.to_vec(),
        }
    }

    fn get_data(&mut self, data: &[u8]) -> Vec<u8> {
        if data != [0x5c, 0x03, 0x5f, 0xff, 0x01] {
            return SW_NOT_FOUND.to_vec();
        }
        let mut inner = tlv(0x70, &self.f9_cert);
        inner.extend([0x71, 0x01, 0x00, 0xfe, 0x00]);
        let out = tlv(0x53, &inner);
        self.respond(out)
    }

    fn sign(&mut self, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
        if p2 == 0x9b {
            return self.management_auth(p1, data);
        }
        if p1 != 0x11 || p2 != 0x9c {
            return SW_BAD_P1P2.to_vec();
        }
        // 7C L 82 00 81 L <digest>
        let digest = match data {
            [0x7c, _, 0x82, 0x00, 0x81, n, rest @ ..]
                if usize::from(*n) == rest.len() && rest.len() <= 32 =>
            {
                rest
            }
            _ => return SW_WRONG_DATA.to_vec(),
        };
        let Some(slot) = self.slot_9c.as_ref() else { return SW_NOT_FOUND.to_vec() };
        let pin_ok = self.pin_verified || slot.pin_policy == 1;
        let touch_ok = slot.touch_policy == 1 || self.touch.0.load(Ordering::SeqCst);
        if slot.pin_policy == 3 {
            self.pin_verified = false; // PIN-always: one signature per VERIFY
        }
        if !pin_ok || !touch_ok {
            return SW_SECURITY.to_vec();
        }
        let mut prehash = [0u8; 32];
        prehash[32 - digest.len()..].copy_from_slice(digest);
        let Ok(sig): Result<Signature, _> = slot.key.sign_prehash(&prehash) else {
            return SW_SECURITY.to_vec();
        };
        let der = sig.to_der();
        let inner = tlv(0x82, der.as_bytes());
        let out = tlv(0x7c, &inner);
        self.respond(out)
    }
}

impl vpicc::VSmartCard for SoftPivCard {
    fn power_off(&mut self) {
        self.reset();
    }

    fn reset(&mut self) {
        self.pin_verified = false;
        self.management_authenticated = false;
        self.expected_witness = None;
        self.chained.clear();
        self.pending.clear();
    }

    fn execute(&mut self, msg: &[u8]) -> Vec<u8> {
        let [cla, ins, p1, p2, rest @ ..] = msg else { return SW_WRONG_DATA.to_vec() };
        let body: &[u8] = match rest {
            [] | [_] => &[],
            [lc, data @ ..] => &data[..usize::from(*lc).min(data.len())],
        };
        if cla & 0x10 != 0 {
            self.chained.extend_from_slice(body);
            return SW_OK.to_vec();
        }
        let mut data = std::mem::take(&mut self.chained);
        data.extend_from_slice(body);
        if *ins != 0xc0 {
            self.pending.clear();
        }
        match ins {
            0xa4 if data.starts_with(&PIV_AID) => {
                // Selecting the application again clears what was verified.
                self.pin_verified = false;
                self.management_authenticated = false;
                SW_OK.to_vec()
            }
            0xa4 => SW_NOT_FOUND.to_vec(),
            0xc0 => {
                let rest = std::mem::take(&mut self.pending);
                self.respond(rest)
            }
            0xfd => self.respond(self.version.to_vec()),
            0xf8 => self.respond(self.serial.to_be_bytes().to_vec()),
            0x20 if *p2 == 0x80 => self.verify(&data),
            0x47 => self.generate(*p2, &data),
            0xf9 => self.attest(*p1),
            0xcb => self.get_data(&data),
            0x87 => self.sign(*p1, *p2, &data),
            _ => SW_NO_INS.to_vec(),
        }
    }
}

/// BER-TLV with a definite length (short or 0x81/0x82 long form).
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = value.len();
    if n < 0x80 {
        out.push(u8::try_from(n).unwrap_or(0));
    } else if n < 0x100 {
        out.extend([0x81, u8::try_from(n).unwrap_or(0)]);
    } else {
        out.push(0x82);
        out.extend(u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
    }
    out.extend_from_slice(value);
    out
}
