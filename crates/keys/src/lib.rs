//! # countersign-keys
//!
//! What the desktop app and the CLI use to talk to an approver's security key. No
//! GUI code and no HTTP: a person is reached through the [`Prompt`] trait, the
//! gateway through the caller.
//!
//! | item | what it does |
//! |---|---|
//! | [`register`] | enroll: CTAP2 `makeCredential` with the PIN, `credProtect` = UV required |
//! | [`sign`] | approve or reject: `getAssertion` over the caller's clientDataJSON (with the `countersign` member) |
//! | [`sign_standard`] | log in, freeze: `getAssertion` over a standard `webauthn.get` |
//! | [`describe`] | model (AAGUID), firmware, PIN set, retries left |
//! | [`usb`] (feature `usb`) | keys on `/dev/hidraw*` |
//! | `piv` (feature `piv`) | YubiKey PIV over PC/SC: slot 9c with PIN-always and touch-always, Yubico attestation, approval signatures |
//! | [`Prompt`] | choose a key, PIN with retries left, last-retry confirmation, touch, processing |
//! | [`Error`] | one specific, human error per failure, with a stable [`Error::code`] |
//!
//! Ceremonies run on a blocking thread; a [`Cancel`] handle stops a pending touch and
//! every touch has a timeout. The software authenticator for tests and the demo is
//! the separate `countersign-softkey` crate, plugged in below the CTAP2 layer, so it
//! runs this exact code path.

mod ctap;
mod error;
#[cfg(feature = "piv")]
pub mod piv;
mod prompt;
#[cfg(feature = "usb")]
pub mod usb;

use serde::Serialize;
use uuid::Uuid;

pub use ctap::{Cancel, Ceremony, DEFAULT_TOUCH_TIMEOUT, describe, register, sign, sign_standard};
pub use error::{Error, Result};
pub use prompt::{Pin, PinRequest, Prompt};
pub use webauthn_authenticator_rs::transport::Token;

/// What a connected key says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// How the key is known here (product name or device path).
    pub label: String,
    /// The model's AAGUID.
    pub aaguid: Option<Uuid>,
    /// Firmware version, as the key reports it.
    pub firmware: Option<String>,
    /// CTAP versions (`FIDO_2_0`, `FIDO_2_1`, `U2F_V2`, …).
    pub versions: Vec<String>,
    /// Whether a PIN is set.
    pub pin_set: bool,
    /// PIN retries left, when a PIN is set.
    pub pin_retries: Option<u32>,
    /// Whether the key supports `credProtect`.
    pub cred_protect: bool,
    /// **A software authenticator** (tests and demo only): every client shows a
    /// permanent warning while one is in use.
    pub software: bool,
}

/// A prompt that answers nothing: for reading a key's info, which asks nobody.
#[derive(Debug)]
pub(crate) struct NoPrompt;

impl Prompt for NoPrompt {
    fn choose_key(&self, _keys: &[KeyInfo]) -> Option<usize> {
        None
    }
    fn pin(&self, _request: &PinRequest) -> Option<Pin> {
        None
    }
    fn confirm_last_retry(&self) -> bool {
        false
    }
    fn touch(&self) {}
    fn processing(&self) {}
}
