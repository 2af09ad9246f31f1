//! Everything a person must do or see during a key ceremony. The desktop app
//! implements [`Prompt`] with events and dialogs, the CLI with a terminal; this crate
//! has no GUI code.

use std::fmt;

use zeroize::Zeroizing;

use crate::KeyInfo;

/// A PIN, wiped from memory when dropped and never shown by `Debug`.
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Wrap a PIN the person typed.
    #[must_use]
    pub fn new(pin: String) -> Pin {
        Pin(Zeroizing::new(pin))
    }

    /// The PIN itself, for the PIN protocol only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// What to show with a PIN request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRequest {
    /// PIN retries the key has left before it blocks, when the key says.
    pub retries_left: Option<u32>,
    /// The previous PIN entered in this ceremony was wrong.
    pub previous_attempt_wrong: bool,
}

/// The person at the key. Methods are called from a blocking thread and may block
/// (a dialog, a terminal read); they must not call back into the ceremony.
pub trait Prompt: Send + Sync + fmt::Debug {
    /// Several keys are connected: which one? `None` cancels.
    fn choose_key(&self, keys: &[KeyInfo]) -> Option<usize>;

    /// Ask for the key's PIN. `None` cancels.
    fn pin(&self, request: &PinRequest) -> Option<Pin>;

    /// Only one PIN retry is left: a wrong PIN now blocks the key for good. Return
    /// `true` only after the person explicitly agreed to spend it.
    fn confirm_last_retry(&self) -> bool;

    /// The key is waiting: "touch your key now".
    fn touch(&self);

    /// The key is working (after the touch).
    fn processing(&self);
}
