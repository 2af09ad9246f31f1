//! One error type for every key ceremony: specific, human, with a stable code.

use webauthn_authenticator_rs::error::{CtapError, WebauthnCError};

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a key ceremony did not produce a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No security key is connected.
    #[error(
        "no security key is connected: insert your key and try again (on Linux, a key you may not open is invisible: see docs/keys.md)"
    )]
    NoKey,
    /// The key was removed (or stopped answering) during the ceremony.
    #[error("the security key was removed during the ceremony: insert it and try again")]
    KeyRemoved,
    /// The PIN was wrong and retries remain (the ceremony already asked again
    /// until the person cancelled; this is what was last seen).
    #[error("wrong PIN ({retries_left} retries left)")]
    WrongPin { retries_left: u32 },
    /// Three wrong PINs since the key was inserted: the key wants a power cycle.
    #[error("too many wrong PINs: remove and reinsert the key, then try again")]
    PinAuthBlocked,
    /// No PIN retries left: the key's FIDO application must be reset (which erases
    /// its credentials) and the key enrolled again.
    #[error("the key's PIN is blocked: reset the key's FIDO application and enroll it again")]
    PinBlocked,
    /// One retry was left and the person did not confirm spending it.
    #[error("one PIN retry is left; not spending it without your explicit confirmation")]
    LastRetryNotConfirmed,
    /// The key has no PIN, and Countersign requires user verification.
    #[error("this key has no PIN: set one (for example with `ykman fido access change-pin`) and try again")]
    PinNotSet,
    /// Nobody touched the key in time.
    #[error("timed out waiting for a touch on the key")]
    TouchTimeout,
    /// The person cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The key is U2F-only or otherwise cannot do what Countersign needs
    /// (CTAP2 with a PIN, ES256).
    #[error("this key is not supported: Countersign needs a FIDO2 (CTAP2) key with a PIN and ES256 ({0})")]
    UnsupportedKey(String),
    /// The key holds none of the credentials the gateway asked for.
    #[error(
        "this key holds no credential the gateway offered: use the key you enrolled, enroll this one, \
         or wait until the admins approve its enrollment"
    )]
    CredentialNotOnThisKey,
    /// The key is already enrolled for this account.
    #[error("this key is already enrolled")]
    AlreadyEnrolled,
    /// The key refused the operation.
    #[error("the key refused the operation")]
    Denied,
    /// What the gateway sent cannot be used (for example a malformed challenge).
    #[error("invalid request for the key: {0}")]
    InvalidRequest(String),
    /// Anything else the key or the transport reported.
    #[error("security key error: {0}")]
    Device(String),

    /// PIV: the card refused the management key.
    #[error("the card refused the PIV management key: check it (ykman piv info) and try again")]
    ManagementKeyRefused,

    /// PIV: the PIN is blocked.
    #[error("the PIV PIN is blocked: unblock it with the PUK (ykman piv access unblock-pin), then try again")]
    PivPinBlocked,

    /// PIV: the attestation does not prove a genuine key with the required policies.
    #[error("the key's attestation was refused: {0}")]
    Attestation(String),
}

impl Error {
    /// A stable code for APIs and the desktop app.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Error::NoKey => "key.none",
            Error::KeyRemoved => "key.removed",
            Error::WrongPin { .. } => "key.pin_wrong",
            Error::PinAuthBlocked => "key.pin_auth_blocked",
            Error::PinBlocked => "key.pin_blocked",
            Error::LastRetryNotConfirmed => "key.pin_last_retry",
            Error::PinNotSet => "key.pin_not_set",
            Error::TouchTimeout => "key.touch_timeout",
            Error::Cancelled => "key.cancelled",
            Error::UnsupportedKey(_) => "key.unsupported",
            Error::CredentialNotOnThisKey => "key.credential_not_found",
            Error::AlreadyEnrolled => "key.already_enrolled",
            Error::Denied => "key.denied",
            Error::InvalidRequest(_) => "key.invalid_request",
            Error::Device(_) => "key.device",
            Error::ManagementKeyRefused => "key.management_key_refused",
            Error::PivPinBlocked => "key.pin_blocked",
            Error::Attestation(_) => "key.attestation_refused",
        }
    }

    /// Map what the CTAP2 layer reported.
    pub(crate) fn from_ctap(e: &WebauthnCError) -> Error {
        match e {
            WebauthnCError::Ctap(c) => match c {
                CtapError::Ctap2PinInvalid => Error::WrongPin { retries_left: 0 },
                CtapError::Ctap2PinBlocked => Error::PinBlocked,
                CtapError::Ctap2PinAuthBlocked => Error::PinAuthBlocked,
                CtapError::Ctap2PinNotSet | CtapError::Ctap2PUATRequired => Error::PinNotSet,
                CtapError::Ctap2UserActionTimeout | CtapError::Ctap2ActionTimeout => Error::TouchTimeout,
                CtapError::Ctap2KeepAliveCancel => Error::Cancelled,
                CtapError::Ctap2NoCredentials | CtapError::Ctap2InvalidCredential => {
                    Error::CredentialNotOnThisKey
                }
                CtapError::Ctap2CredentialExcluded => Error::AlreadyEnrolled,
                CtapError::Ctap2OperationDenied | CtapError::Ctap2NotAllowed => Error::Denied,
                CtapError::Ctap2UnsupportedAlgorithm | CtapError::Ctap2UnsupportedOption => {
                    Error::UnsupportedKey(format!("{c:?}"))
                }
                other => Error::Device(format!("{other:?}")),
            },
            WebauthnCError::UserVerificationRequired => Error::PinNotSet,
            WebauthnCError::Cancelled => Error::Cancelled,
            WebauthnCError::NoSelectedToken | WebauthnCError::NoHidDevices => Error::NoKey,
            WebauthnCError::Closed | WebauthnCError::IoError(_) | WebauthnCError::ApduTransmission => {
                Error::KeyRemoved
            }
            #[cfg(feature = "usb")]
            WebauthnCError::HidError(_) => Error::KeyRemoved,
            WebauthnCError::NotSupported | WebauthnCError::InvalidAlgorithm => {
                Error::UnsupportedKey(format!("{e:?}"))
            }
            other => Error::Device(format!("{other:?}")),
        }
    }
}
