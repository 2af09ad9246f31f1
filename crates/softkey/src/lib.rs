//! # countersign-softkey — a SOFTWARE authenticator, for tests and the demo only
//!
//! **WARNING: THIS IS NOT A SECURITY KEY.** Its secrets live in process memory and
//! in a plain file; its attestation chains to a development CA whose key anyone can
//! derive (see [`dev_ca_pem`]). A gateway trusts it only under the explicit
//! `development` attestation preset, marks its credentials as software (they carry
//! [`countersign_core::SOFTWARE_AUTHENTICATOR_AAGUID`]), and every Countersign client
//! shows a permanent warning while one is in use. Production builds of the desktop
//! app and the CLI do not link this crate.
//!
//! It is plugged in **below** the CTAP2 layer: [`SoftKey`] implements
//! `webauthn_authenticator_rs`'s `Token` and answers raw CTAP2 CBOR, so
//! `countersign-keys` drives it through exactly the code path it uses for a USB key:
//! `authenticatorGetInfo`, `authenticatorClientPIN` (PIN/UV auth protocol 2: set PIN,
//! PIN tokens with permissions, retries that persist, three wrong PINs per power-up,
//! lockout), `authenticatorMakeCredential` (ES256, packed attestation, `credProtect`),
//! `authenticatorGetAssertion` (allow list, signature counter, UP and UV flags),
//! `authenticatorSelection` and `authenticatorReset`.
//!
//! Credentials are not stored: like many hardware keys, the credential ID carries a
//! random nonce and a MAC, and the private key is derived from the device secret.

mod attestation;
mod ctap;
mod pin;
#[cfg(feature = "piv")]
pub mod piv;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use p256::ecdsa::SigningKey;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::Notify;
use uuid::Uuid;
use webauthn_authenticator_rs::error::{CtapError, WebauthnCError};
use webauthn_authenticator_rs::transport::Token;
use webauthn_authenticator_rs::ui::UiCallback;
use webauthn_rs_proto::AuthenticatorTransport;

pub use attestation::dev_ca_pem;
use ctap::{PIN_RETRIES, PinToken, Status, Step};
use pin::KeyAgreement;

/// Errors setting up or persisting a soft key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state file could not be read or written.
    #[error("soft key state file {path}: {message}")]
    File { path: PathBuf, message: String },
    /// A cryptographic building block failed; this is a bug.
    #[error("soft key cryptography: {0}")]
    Crypto(&'static str),
    /// The PIN is shorter than 4 or longer than 63 characters.
    #[error("a PIN has 4 to 63 characters")]
    PinPolicy,
}

/// How the simulated person answers "touch your key".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Touched at once (after the client was told to ask for a touch).
    Immediate,
    /// Touched after a pause, so a person watching the demo sees the prompt.
    After(Duration),
    /// Never touched: the ceremony waits until it times out or is cancelled.
    Never,
}

/// The AAGUID every soft key reports.
fn aaguid() -> Uuid {
    Uuid::parse_str(countersign_core::SOFTWARE_AUTHENTICATOR_AAGUID).unwrap_or_default()
}

fn random<const N: usize>() -> Result<[u8; N], Status> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| Status::OTHER)?;
    Ok(out)
}

/// What the state file holds. The master secret is in plain text: this is a
/// software authenticator (see the crate docs); the file is created with mode 0600.
#[derive(Serialize, Deserialize)]
struct StateFile {
    format: String,
    warning: String,
    label: String,
    master_secret: String,
    counter: u32,
    pin_hash: Option<String>,
    pin_retries: u8,
}

const FORMAT: &str = "countersign-softkey-v1";
const WARNING: &str = "SOFTWARE AUTHENTICATOR FOR TESTS AND THE DEMO ONLY - NOT A SECURITY KEY";

/// The device: persistent secrets and counters, and per-power-up state.
struct Device {
    label: String,
    master: [u8; 32],
    counter: u32,
    pin_hash: Option<[u8; 16]>,
    pin_retries: u8,
    path: Option<PathBuf>,
    // per power-up
    key_agreement: KeyAgreement,
    pin_token: Option<PinToken>,
    mismatches: u8,
    presence: Presence,
    plugged_in: bool,
    /// Tests of the relying party only: advertise credProtect but never apply it.
    drops_cred_protect: bool,
}

impl Device {
    fn fresh(label: &str, path: Option<PathBuf>) -> Result<Device, Status> {
        Ok(Device {
            label: label.to_owned(),
            master: random()?,
            counter: 0,
            pin_hash: None,
            pin_retries: PIN_RETRIES,
            path,
            key_agreement: KeyAgreement::generate()?,
            pin_token: None,
            mismatches: 0,
            presence: Presence::Immediate,
            plugged_in: true,
            drops_cred_protect: false,
        })
    }

    /// A power cycle: new key agreement key, no PIN token, wrong-PIN count reset.
    fn power_up(&mut self) -> Result<(), Status> {
        self.key_agreement = KeyAgreement::generate()?;
        self.pin_token = None;
        self.mismatches = 0;
        Ok(())
    }

    fn reset(&mut self) -> Result<(), Status> {
        self.master = random()?;
        self.pin_hash = None;
        self.pin_retries = PIN_RETRIES;
        self.power_up()?;
        self.save()
    }

    fn next_counter(&mut self) -> Result<u32, Status> {
        self.counter = self.counter.checked_add(1).ok_or(Status::OTHER)?;
        self.save()?;
        Ok(self.counter)
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC pads a short key with zeros to the block size (RFC 2104); doing it here
        // makes the construction infallible.
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(&self.master);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&key.into());
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// `0x01 || credProtect level || nonce(32) || MAC(16)`, bound to the RP.
    fn credential_id(&self, rp_id_hash: &[u8; 32], level: u8, nonce: &[u8; 32]) -> Vec<u8> {
        let tag = self.mac(&[b"id", &[1, level], nonce, rp_id_hash]);
        [&[1, level][..], nonce, &tag[..16]].concat()
    }

    fn credential_key(&self, rp_id_hash: &[u8; 32], nonce: &[u8; 32]) -> Result<SigningKey, Status> {
        SigningKey::from_slice(&self.mac(&[b"key", nonce, rp_id_hash])).map_err(|_| Status::OTHER)
    }

    /// The credential's protection level and key, if `id` is one of ours for this RP.
    fn open_credential(&self, rp_id_hash: &[u8; 32], id: &[u8]) -> Option<(u8, SigningKey)> {
        let (&[1, level], rest) = id.split_first_chunk::<2>()? else { return None };
        let nonce: [u8; 32] = rest.get(..32)?.try_into().ok()?;
        let expected = self.credential_id(rp_id_hash, level, &nonce);
        if expected.len() != id.len() || expected.iter().zip(id).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0 {
            return None;
        }
        Some((level, self.credential_key(rp_id_hash, &nonce).ok()?))
    }

    fn to_file(&self) -> StateFile {
        let b64 = |b: &[u8]| data_encoding::BASE64URL_NOPAD.encode(b);
        StateFile {
            format: FORMAT.into(),
            warning: WARNING.into(),
            label: self.label.clone(),
            master_secret: b64(&self.master),
            counter: self.counter,
            pin_hash: self.pin_hash.map(|h| b64(&h)),
            pin_retries: self.pin_retries,
        }
    }

    fn save(&self) -> Result<(), Status> {
        let Some(path) = &self.path else { return Ok(()) };
        write_state(path, &self.to_file()).map_err(|e| {
            tracing::error!(error = %e, "soft key state could not be saved");
            Status::OTHER
        })
    }
}

fn write_state(path: &Path, state: &StateFile) -> Result<(), Error> {
    use std::io::Write;
    let file_err = |e: std::io::Error| Error::File { path: path.to_owned(), message: e.to_string() };
    let json = serde_json::to_vec_pretty(state).map_err(|_| Error::Crypto("state encoding"))?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp).map_err(file_err)?;
    f.write_all(&json).and_then(|()| f.sync_all()).map_err(file_err)?;
    std::fs::rename(&tmp, path).map_err(file_err)
}

/// A software CTAP2 authenticator. Clones are handles to the same device (as if
/// the same key were found again); [`SoftKey::clone_device`] makes a copy of its
/// secrets, as an attacker who cloned a key would have.
#[derive(Clone)]
pub struct SoftKey {
    device: Arc<Mutex<Device>>,
    removed: Arc<Notify>,
}

impl fmt::Debug for SoftKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = self.lock().map(|d| d.label.clone()).unwrap_or_default();
        f.debug_struct("SoftKey").field("label", &label).field("software", &true).finish_non_exhaustive()
    }
}

fn ctap(status: Status) -> WebauthnCError {
    WebauthnCError::Ctap(CtapError::from(status.0))
}

impl SoftKey {
    fn wrap(device: Device) -> SoftKey {
        SoftKey { device: Arc::new(Mutex::new(device)), removed: Arc::new(Notify::new()) }
    }

    /// A new key that lives in memory only, with no PIN.
    pub fn new(label: &str) -> Result<SoftKey, Error> {
        Device::fresh(label, None).map(SoftKey::wrap).map_err(|_| Error::Crypto("new soft key"))
    }

    /// A new key whose state is kept in `path` (mode 0600), with no PIN.
    pub fn create(path: &Path, label: &str) -> Result<SoftKey, Error> {
        let device =
            Device::fresh(label, Some(path.to_owned())).map_err(|_| Error::Crypto("new soft key"))?;
        write_state(path, &device.to_file())?;
        Ok(SoftKey::wrap(device))
    }

    /// Open a key saved by [`SoftKey::create`].
    pub fn open(path: &Path) -> Result<SoftKey, Error> {
        let file_err = |message: String| Error::File { path: path.to_owned(), message };
        let bytes = std::fs::read(path).map_err(|e| file_err(e.to_string()))?;
        let s: StateFile = serde_json::from_slice(&bytes).map_err(|e| file_err(e.to_string()))?;
        if s.format != FORMAT {
            return Err(file_err(format!("unknown format {:?}", s.format)));
        }
        let decode = |v: &str| data_encoding::BASE64URL_NOPAD.decode(v.as_bytes()).ok();
        let master = decode(&s.master_secret).and_then(|m| <[u8; 32]>::try_from(m).ok());
        let pin_hash = match &s.pin_hash {
            None => Ok(None),
            Some(h) => decode(h).and_then(|h| <[u8; 16]>::try_from(h).ok()).map(Some).ok_or(()),
        };
        let (Some(master), Ok(pin_hash)) = (master, pin_hash) else {
            return Err(file_err("corrupt secret or PIN hash".into()));
        };
        let mut device = Device::fresh(&s.label, Some(path.to_owned())).map_err(|_| Error::Crypto("open"))?;
        device.master = master;
        device.counter = s.counter;
        device.pin_hash = pin_hash;
        device.pin_retries = s.pin_retries.min(PIN_RETRIES);
        Ok(SoftKey::wrap(device))
    }

    fn lock(&self) -> Result<MutexGuard<'_, Device>, WebauthnCError> {
        self.device.lock().map_err(|_| WebauthnCError::PoisonedMutex)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Device) -> R) -> Option<R> {
        self.device.lock().ok().map(|mut d| f(&mut d))
    }

    /// Set the PIN directly, as the key's owner would have done once with a vendor
    /// tool (`authenticatorClientPIN` setPIN works too).
    pub fn set_pin(&self, pin: &str) -> Result<(), Error> {
        if !(4..=63).contains(&pin.chars().count()) {
            return Err(Error::PinPolicy);
        }
        self.with(|d| {
            d.pin_hash = Some(ctap::left16(pin.as_bytes()));
            d.pin_retries = PIN_RETRIES;
            d.save()
        })
        .and_then(Result::ok)
        .ok_or(Error::Crypto("saving the PIN"))
    }

    /// Behave like a faulty key that advertises credProtect but silently does not
    /// apply it: for testing that a relying party checks the registration itself.
    pub fn drop_cred_protect(&self) {
        self.with(|d| d.drops_cred_protect = true);
    }

    /// How the simulated person answers "touch your key".
    pub fn set_presence(&self, presence: Presence) {
        self.with(|d| d.presence = presence);
    }

    /// PIN retries left.
    pub fn pin_retries(&self) -> u8 {
        self.with(|d| d.pin_retries).unwrap_or(0)
    }

    /// The signature counter.
    pub fn counter(&self) -> u32 {
        self.with(|d| d.counter).unwrap_or(0)
    }

    /// The label given at creation.
    pub fn label(&self) -> String {
        self.with(|d| d.label.clone()).unwrap_or_default()
    }

    /// Pull the key out: pending and later commands fail as with a removed USB key.
    pub fn unplug(&self) {
        self.with(|d| d.plugged_in = false);
        self.removed.notify_waiters();
    }

    /// Put the key back (a power cycle).
    pub fn plug_in(&self) {
        self.with(|d| {
            d.plugged_in = true;
            d.power_up()
        });
    }

    /// An independent copy of this key's secrets and counter, in memory: what an
    /// attacker who cloned the key would hold.
    pub fn clone_device(&self) -> Result<SoftKey, Error> {
        let copy = self
            .with(|d| {
                let mut c = Device::fresh(&d.label, None)?;
                c.master = d.master;
                c.counter = d.counter;
                c.pin_hash = d.pin_hash;
                c.pin_retries = d.pin_retries;
                Ok::<_, Status>(c)
            })
            .and_then(Result::ok)
            .ok_or(Error::Crypto("clone"))?;
        Ok(SoftKey::wrap(copy))
    }

    async fn wait_for_touch(&self) -> Result<(), WebauthnCError> {
        let removed = self.removed.notified();
        tokio::pin!(removed);
        removed.as_mut().enable();
        let (presence, plugged_in) =
            self.with(|d| (d.presence, d.plugged_in)).ok_or(WebauthnCError::PoisonedMutex)?;
        if !plugged_in {
            return Err(WebauthnCError::Closed);
        }
        let touched = async {
            match presence {
                Presence::Immediate => {}
                Presence::After(pause) => tokio::time::sleep(pause).await,
                Presence::Never => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = touched => Ok(()),
            () = removed => Err(WebauthnCError::Closed),
        }
    }
}

#[async_trait]
impl Token for SoftKey {
    type Id = String;

    fn get_transport(&self) -> AuthenticatorTransport {
        AuthenticatorTransport::Test
    }

    async fn transmit_raw<U>(&mut self, cmd: &[u8], ui: &U) -> Result<Vec<u8>, WebauthnCError>
    where
        U: UiCallback,
    {
        let step = {
            let mut d = self.lock()?;
            if !d.plugged_in {
                return Err(WebauthnCError::Closed);
            }
            d.begin(cmd).map_err(ctap)?
        };
        let pending = match step {
            Step::Done(reply) => return Ok(reply),
            Step::Touch(pending) => pending,
        };
        ui.request_touch();
        self.wait_for_touch().await?;
        let mut d = self.lock()?;
        if !d.plugged_in {
            return Err(WebauthnCError::Closed);
        }
        let reply = d.finish(pending).map_err(ctap);
        drop(d);
        if reply.is_ok() {
            ui.processing();
        }
        reply
    }

    async fn cancel(&mut self) -> Result<(), WebauthnCError> {
        Ok(())
    }

    async fn init(&mut self) -> Result<(), WebauthnCError> {
        let mut d = self.lock()?;
        if !d.plugged_in {
            return Err(WebauthnCError::Closed);
        }
        d.power_up().map_err(ctap)
    }

    async fn close(&mut self) -> Result<(), WebauthnCError> {
        Ok(())
    }
}

/// A hardware token, or this software key: what a client built for tests or the
/// demo holds. Production builds use the hardware token type directly.
#[derive(Debug)]
pub enum KeyOrSoft<T: Token> {
    /// A security key (e.g. USB).
    Hardware(T),
    /// **The software key** (tests and demo only).
    Software(SoftKey),
}

#[async_trait]
impl<T: Token> Token for KeyOrSoft<T> {
    type Id = String;

    fn has_button(&self) -> bool {
        match self {
            KeyOrSoft::Hardware(t) => t.has_button(),
            KeyOrSoft::Software(t) => t.has_button(),
        }
    }

    fn get_transport(&self) -> AuthenticatorTransport {
        match self {
            KeyOrSoft::Hardware(t) => t.get_transport(),
            KeyOrSoft::Software(t) => t.get_transport(),
        }
    }

    async fn transmit_raw<U: UiCallback>(&mut self, cmd: &[u8], ui: &U) -> Result<Vec<u8>, WebauthnCError> {
        match self {
            KeyOrSoft::Hardware(t) => t.transmit_raw(cmd, ui).await,
            KeyOrSoft::Software(t) => t.transmit_raw(cmd, ui).await,
        }
    }

    async fn cancel(&mut self) -> Result<(), WebauthnCError> {
        match self {
            KeyOrSoft::Hardware(t) => t.cancel().await,
            KeyOrSoft::Software(t) => t.cancel().await,
        }
    }

    async fn init(&mut self) -> Result<(), WebauthnCError> {
        match self {
            KeyOrSoft::Hardware(t) => t.init().await,
            KeyOrSoft::Software(t) => t.init().await,
        }
    }

    async fn close(&mut self) -> Result<(), WebauthnCError> {
        match self {
            KeyOrSoft::Hardware(t) => t.close().await,
            KeyOrSoft::Software(t) => t.close().await,
        }
    }
}

/// A simulated person at a software key, for tests and the demo: types `pin` when
/// asked and never spends a last retry. When the touch happens is the key's
/// [`Presence`].
#[derive(Debug, Clone)]
pub struct SimulatedPerson {
    pin: String,
}

impl SimulatedPerson {
    /// Someone who knows `pin`.
    #[must_use]
    pub fn new(pin: &str) -> SimulatedPerson {
        SimulatedPerson { pin: pin.to_owned() }
    }

    /// A key ceremony with this person at the key.
    #[must_use]
    pub fn ceremony(&self) -> countersign_keys::Ceremony {
        countersign_keys::Ceremony::new(Arc::new(self.clone()))
    }
}

impl countersign_keys::Prompt for SimulatedPerson {
    fn choose_key(&self, _keys: &[countersign_keys::KeyInfo]) -> Option<usize> {
        Some(0)
    }
    fn pin(&self, _request: &countersign_keys::PinRequest) -> Option<countersign_keys::Pin> {
        Some(countersign_keys::Pin::new(self.pin.clone()))
    }
    fn confirm_last_retry(&self) -> bool {
        false
    }
    fn touch(&self) {}
    fn processing(&self) {}
}
