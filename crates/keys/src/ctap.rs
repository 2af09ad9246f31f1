//! CTAP2 ceremonies on any `Token` (a USB key, or the software key in tests), through
//! `webauthn-authenticator-rs`'s CTAP 2.0/2.1 client.
//!
//! Between that client and the token sits [`Guarded`], which
//! - stops a transmit when the ceremony is cancelled or the touch times out (and
//!   tells the key to stop waiting),
//! - remembers the PIN retries the key reported, so the [`Prompt`] can show them and
//!   the last retry is never spent without confirmation,
//! - asks for `credProtect = userVerificationRequired` on every new credential (the
//!   client has no field for extensions), so an enrolled credential cannot even be
//!   found on the key without the PIN.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_cbor_2::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use webauthn_authenticator_rs::AuthenticatorBackendHashedClientData;
use webauthn_authenticator_rs::ctap2::CtapAuthenticator;
use webauthn_authenticator_rs::ctap2::commands::{ClientPinRequest, ClientPinSubCommand, GetInfoRequest};
use webauthn_authenticator_rs::error::{CtapError, WebauthnCError};
use webauthn_authenticator_rs::transport::Token;
use webauthn_authenticator_rs::types::{CableRequestType, CableState, EnrollSampleStatus};
use webauthn_authenticator_rs::ui::UiCallback;
use webauthn_rs_proto::{
    AuthenticatorTransport, PublicKeyCredential, PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions, RegisterPublicKeyCredential,
};

use crate::{Error, KeyInfo, PinRequest, Prompt, Result};

/// How long a key may wait for a touch before the ceremony gives up.
pub const DEFAULT_TOUCH_TIMEOUT: Duration = Duration::from_secs(30);

/// `credProtect` level 3: the credential is usable only with user verification.
const CRED_PROTECT_UV_REQUIRED: i128 = 3;

/// Stops a ceremony from another thread or task: a pending touch ends at once.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: AtomicBool,
    notify: Notify,
}

impl Cancel {
    /// Cancel the ceremony.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether [`Cancel::cancel`] was called.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    async fn cancelled(&self) {
        let notified = self.0.notify.notified();
        if !self.is_cancelled() {
            notified.await;
        }
    }
}

/// The settings of one ceremony.
#[derive(Debug, Clone)]
pub struct Ceremony {
    prompt: Arc<dyn Prompt>,
    cancel: Cancel,
    touch_timeout: Duration,
}

impl Ceremony {
    /// A ceremony that talks to the person through `prompt`.
    pub fn new(prompt: Arc<dyn Prompt>) -> Ceremony {
        Ceremony { prompt, cancel: Cancel::default(), touch_timeout: DEFAULT_TOUCH_TIMEOUT }
    }

    /// How long to wait for each touch.
    #[must_use]
    pub fn touch_timeout(mut self, timeout: Duration) -> Ceremony {
        self.touch_timeout = timeout;
        self
    }

    /// The handle that cancels this ceremony.
    #[must_use]
    pub fn cancel_handle(&self) -> Cancel {
        self.cancel.clone()
    }
}

/// Why a ceremony stopped early, as seen by [`Guarded`] and [`Bridge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    TouchTimeout,
    LastRetryNotConfirmed,
    PinBlocked,
}

/// What [`Guarded`] and [`Bridge`] share during one ceremony.
#[derive(Debug, Default)]
struct Shared {
    retries: Mutex<Option<u32>>,
    previous_wrong: AtomicBool,
    stop: Mutex<Option<Stop>>,
    last_error: Mutex<Option<Error>>,
}

impl Shared {
    fn stop(&self, why: Stop) {
        if let Ok(mut s) = self.stop.lock() {
            s.get_or_insert(why);
        }
    }
    fn stopped(&self) -> Option<Stop> {
        self.stop.lock().ok().and_then(|s| *s)
    }
    fn retries(&self) -> Option<u32> {
        self.retries.lock().ok().and_then(|r| *r)
    }
}

/// The token, guarded: see the module docs.
#[derive(Debug)]
struct Guarded<T: Token> {
    inner: T,
    shared: Arc<Shared>,
    cancel: Cancel,
    touch_timeout: Duration,
}

/// Add `credProtect: 3` to an `authenticatorMakeCredential` request.
fn with_cred_protect(cmd: &[u8]) -> Option<Vec<u8>> {
    let (&code, body) = cmd.split_first()?;
    let Ok(Value::Map(mut params)) = serde_cbor_2::from_slice::<Value>(body) else { return None };
    let extensions = params.entry(Value::Integer(6)).or_insert_with(|| Value::Map(Default::default()));
    let Value::Map(extensions) = extensions else { return None };
    extensions.insert(Value::Text("credProtect".into()), Value::Integer(CRED_PROTECT_UV_REQUIRED));
    let mut out = vec![code];
    out.extend(serde_cbor_2::to_vec(&Value::Map(params)).ok()?);
    Some(out)
}

/// `pinRetries` from an `authenticatorClientPIN` response, if present.
fn pin_retries(response: &[u8]) -> Option<u32> {
    match serde_cbor_2::from_slice::<Value>(response).ok()? {
        Value::Map(m) => match m.get(&Value::Integer(3))? {
            Value::Integer(n) => u32::try_from(*n).ok(),
            _ => None,
        },
        _ => None,
    }
}

#[async_trait]
impl<T: Token> Token for Guarded<T> {
    type Id = T::Id;

    fn has_button(&self) -> bool {
        self.inner.has_button()
    }

    fn get_transport(&self) -> AuthenticatorTransport {
        self.inner.get_transport()
    }

    async fn transmit_raw<U>(&mut self, cmd: &[u8], ui: &U) -> Result<Vec<u8>, WebauthnCError>
    where
        U: UiCallback,
    {
        if self.cancel.is_cancelled() {
            self.shared.stop(Stop::Cancelled);
            return Err(WebauthnCError::Cancelled);
        }
        let rewritten = match cmd.first() {
            Some(0x01) => Some(with_cred_protect(cmd).ok_or(WebauthnCError::Cbor)?),
            _ => None,
        };
        let cmd = rewritten.as_deref().unwrap_or(cmd);
        let cancel = self.cancel.clone();
        let outcome = tokio::select! {
            r = self.inner.transmit_raw(cmd, ui) => Ok(r),
            () = cancel.cancelled() => Err(Stop::Cancelled),
            () = tokio::time::sleep(self.touch_timeout) => Err(Stop::TouchTimeout),
        };
        match outcome {
            Ok(Ok(reply)) => {
                if cmd.first() == Some(&0x06)
                    && let Some(n) = pin_retries(&reply)
                    && let Ok(mut r) = self.shared.retries.lock()
                {
                    *r = Some(n);
                }
                Ok(reply)
            }
            Ok(Err(e)) => {
                if let Ok(mut last) = self.shared.last_error.lock() {
                    *last = Some(Error::from_ctap(&e));
                }
                Err(e)
            }
            Err(why) => {
                // Tell the key to stop waiting for a touch (CTAPHID_CANCEL on USB).
                let _ = self.inner.cancel().await;
                self.shared.stop(why);
                Err(WebauthnCError::Cancelled)
            }
        }
    }

    async fn cancel(&mut self) -> Result<(), WebauthnCError> {
        self.inner.cancel().await
    }

    async fn init(&mut self) -> Result<(), WebauthnCError> {
        let r = self.inner.init().await;
        if let (Err(e), Ok(mut last)) = (&r, self.shared.last_error.lock()) {
            *last = Some(Error::from_ctap(e));
        }
        r
    }

    async fn close(&mut self) -> Result<(), WebauthnCError> {
        self.inner.close().await
    }
}

/// The [`Prompt`], as the CTAP2 client's `UiCallback`.
#[derive(Debug)]
struct Bridge {
    prompt: Arc<dyn Prompt>,
    shared: Arc<Shared>,
}

impl UiCallback for Bridge {
    fn request_pin(&self) -> Option<String> {
        // The client has just asked the key for its retries (getPinRetries).
        let retries_left = self.shared.retries();
        match retries_left {
            Some(0) => {
                self.shared.stop(Stop::PinBlocked);
                return None;
            }
            Some(1) if !self.prompt.confirm_last_retry() => {
                self.shared.stop(Stop::LastRetryNotConfirmed);
                return None;
            }
            _ => {}
        }
        let request = PinRequest {
            retries_left,
            previous_attempt_wrong: self.shared.previous_wrong.load(Ordering::SeqCst),
        };
        match self.prompt.pin(&request) {
            Some(pin) => Some(pin.expose().to_owned()),
            None => {
                self.shared.stop(Stop::Cancelled);
                None
            }
        }
    }

    fn request_touch(&self) {
        self.prompt.touch();
    }

    fn processing(&self) {
        self.prompt.processing();
    }

    fn fingerprint_enrollment_feedback(&self, _remaining: u32, _feedback: Option<EnrollSampleStatus>) {}
    fn cable_qr_code(&self, _request_type: CableRequestType, _url: String) {}
    fn dismiss_qr_code(&self) {}
    fn cable_status_update(&self, _state: CableState) {}
}

/// Map a failed ceremony to the most specific error.
fn failure(shared: &Shared, e: &WebauthnCError) -> Error {
    match shared.stopped() {
        Some(Stop::Cancelled) => Error::Cancelled,
        Some(Stop::TouchTimeout) => Error::TouchTimeout,
        Some(Stop::LastRetryNotConfirmed) => Error::LastRetryNotConfirmed,
        Some(Stop::PinBlocked) => Error::PinBlocked,
        None => match Error::from_ctap(e) {
            Error::WrongPin { .. } => Error::WrongPin { retries_left: shared.retries().unwrap_or(0) },
            other => other,
        },
    }
}

/// Run `f` on the key's CTAP2 interface on a blocking thread, asking for the PIN
/// again after a wrong one until the person cancels or the key blocks.
async fn run<T, R, F>(token: T, ceremony: &Ceremony, f: F) -> Result<R>
where
    T: Token + 'static,
    R: Send + 'static,
    F: Fn(&mut CtapAuthenticator<'_, Guarded<T>, Bridge>) -> Result<R, WebauthnCError> + Send + 'static,
{
    let shared = Arc::new(Shared::default());
    let guarded = Guarded {
        inner: token,
        shared: shared.clone(),
        cancel: ceremony.cancel.clone(),
        touch_timeout: ceremony.touch_timeout,
    };
    let bridge = Bridge { prompt: ceremony.prompt.clone(), shared: shared.clone() };
    let handle = tokio::runtime::Handle::current();
    let job = tokio::task::spawn_blocking(move || {
        let Some(mut auth) = handle.block_on(CtapAuthenticator::new(guarded, &bridge)) else {
            let last = shared.last_error.lock().ok().and_then(|mut l| l.take());
            return Err(last.unwrap_or_else(|| Error::UnsupportedKey("no CTAP2 support (U2F-only?)".into())));
        };
        loop {
            match f(&mut auth) {
                Ok(r) => return Ok(r),
                Err(WebauthnCError::Ctap(CtapError::Ctap2PinInvalid)) if shared.stopped().is_none() => {
                    shared.previous_wrong.store(true, Ordering::SeqCst);
                }
                Err(e) => return Err(failure(&shared, &e)),
            }
        }
    });
    job.await.map_err(|e| Error::Device(format!("ceremony thread: {e}")))?
}

/// The clientDataJSON a browser would write for a standard ceremony.
fn standard_client_data(kind: &str, challenge: &[u8], origin: &str) -> Result<Vec<u8>> {
    let challenge = data_encoding::BASE64URL_NOPAD.encode(challenge);
    serde_json::to_vec(&serde_json::json!({
        "type": kind, "challenge": challenge, "origin": origin, "crossOrigin": false,
    }))
    .map_err(|e| Error::InvalidRequest(e.to_string()))
}

/// The credential ID inside an attestation object's authenticator data.
fn attested_credential_id(attestation_object: &[u8]) -> Option<Vec<u8>> {
    let Value::Map(m) = serde_cbor_2::from_slice::<Value>(attestation_object).ok()? else { return None };
    let Value::Bytes(auth_data) = m.get(&Value::Text("authData".into()))? else { return None };
    // rpIdHash(32) flags(1) signCount(4) aaguid(16) credentialIdLength(2) credentialId
    let len = u16::from_be_bytes(auth_data.get(53..55)?.try_into().ok()?);
    auth_data.get(55..55 + usize::from(len)).map(<[u8]>::to_vec)
}

/// Register a new credential on the key (`authenticatorMakeCredential` with the PIN),
/// answering the gateway's enrollment options for `origin`.
///
/// # Errors
/// Any [`Error`]: no key, wrong PIN, timeout, cancelled, already enrolled, …
pub async fn register<T: Token + 'static>(
    token: T,
    ceremony: &Ceremony,
    options: PublicKeyCredentialCreationOptions,
    origin: &str,
) -> Result<RegisterPublicKeyCredential> {
    let client_data_json = standard_client_data("webauthn.create", &options.challenge, origin)?;
    let hash = Sha256::digest(&client_data_json).to_vec();
    let timeout_ms = u32::try_from(ceremony.touch_timeout.as_millis()).unwrap_or(u32::MAX);
    let mut credential =
        run(token, ceremony, move |auth| auth.perform_register(hash.clone(), options.clone(), timeout_ms))
            .await?;
    let id = attested_credential_id(&credential.response.attestation_object)
        .ok_or_else(|| Error::Device("the key's attestation has no credential".into()))?;
    credential.id = data_encoding::BASE64URL_NOPAD.encode(&id);
    credential.raw_id = id;
    credential.response.client_data_json = client_data_json;
    Ok(credential)
}

/// Sign with an enrolled credential (`authenticatorGetAssertion` with the PIN) over
/// `client_data_json` exactly as given: the caller builds it, for an approval with
/// the `countersign` member (see `countersign_core::binding::client_data_json`).
///
/// # Errors
/// Any [`Error`].
pub async fn sign<T: Token + 'static>(
    token: T,
    ceremony: &Ceremony,
    options: PublicKeyCredentialRequestOptions,
    client_data_json: Vec<u8>,
) -> Result<PublicKeyCredential> {
    let hash = Sha256::digest(&client_data_json).to_vec();
    let timeout_ms = u32::try_from(ceremony.touch_timeout.as_millis()).unwrap_or(u32::MAX);
    let mut credential =
        run(token, ceremony, move |auth| auth.perform_auth(hash.clone(), options.clone(), timeout_ms))
            .await?;
    credential.response.client_data_json = client_data_json;
    Ok(credential)
}

/// Sign a standard `webauthn.get` (login, freeze) for `origin`.
///
/// # Errors
/// Any [`Error`].
pub async fn sign_standard<T: Token + 'static>(
    token: T,
    ceremony: &Ceremony,
    options: PublicKeyCredentialRequestOptions,
    origin: &str,
) -> Result<PublicKeyCredential> {
    let client_data_json = standard_client_data("webauthn.get", &options.challenge, origin)?;
    sign(token, ceremony, options, client_data_json).await
}

/// What the key says about itself: model (AAGUID), firmware, PIN state.
///
/// # Errors
/// [`Error::KeyRemoved`] and other transport errors.
pub async fn describe<T: Token>(token: &mut T, label: String) -> Result<KeyInfo> {
    let ui = Bridge { prompt: Arc::new(crate::NoPrompt), shared: Arc::default() };
    token.init().await.map_err(|e| Error::from_ctap(&e))?;
    let info = token.transmit(GetInfoRequest {}, &ui).await.map_err(|e| Error::from_ctap(&e))?;
    let pin_set = info.get_option("clientPin").unwrap_or(false);
    let pin_retries = if pin_set {
        let request = ClientPinRequest {
            pin_uv_protocol: info.pin_protocols.as_ref().and_then(|p| p.first().copied()),
            sub_command: ClientPinSubCommand::GetPinRetries,
            ..Default::default()
        };
        token.transmit(request, &ui).await.ok().and_then(|r| r.pin_retries)
    } else {
        None
    };
    let aaguid = info.aaguid;
    Ok(KeyInfo {
        label,
        software: aaguid.is_some_and(|a| a.to_string() == countersign_core::SOFTWARE_AUTHENTICATOR_AAGUID),
        aaguid,
        firmware: info.firmware_version.map(|v| v.to_string()),
        versions: info.versions.iter().cloned().collect(),
        pin_set,
        pin_retries,
        cred_protect: info.extensions.as_ref().is_some_and(|e| e.iter().any(|x| x == "credProtect")),
    })
}
