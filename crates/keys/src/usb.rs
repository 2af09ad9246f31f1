//! Security keys on USB HID (`/dev/hidraw*` on Linux).
//!
//! **Linux:** a key the user may not open is invisible (it is skipped, not an
//! error). systemd 252 and later grant access to FIDO keys by their HID usage page;
//! older systems need a udev rule — see `docs/keys.md`.

use webauthn_authenticator_rs::transport::Transport;
use webauthn_authenticator_rs::usb::{USBToken, USBTransport};

use crate::{Error, KeyInfo, Prompt, Result, describe};

/// Every FIDO key connected over USB, with what it says about itself.
///
/// # Errors
/// [`Error::Device`] when USB cannot be enumerated at all.
pub async fn keys() -> Result<Vec<(USBToken, KeyInfo)>> {
    let transport = USBTransport::new().await.map_err(|e| Error::Device(format!("USB: {e:?}")))?;
    let tokens = transport.tokens().await.map_err(|e| Error::Device(format!("USB: {e:?}")))?;
    let mut out = Vec::with_capacity(tokens.len());
    for (n, mut token) in tokens.into_iter().enumerate() {
        match describe(&mut token, format!("USB security key #{}", n + 1)).await {
            Ok(info) => out.push((token, info)),
            Err(e) => tracing::warn!(error = %e, "skipping a USB key that did not answer getInfo"),
        }
    }
    Ok(out)
}

/// The key to use: the only one connected, or the one the person picks.
///
/// # Errors
/// [`Error::NoKey`], [`Error::Cancelled`], [`Error::UnsupportedKey`] (U2F-only).
pub async fn choose(prompt: &dyn Prompt) -> Result<(USBToken, KeyInfo)> {
    let mut found = keys().await?;
    let index = match found.len() {
        0 => return Err(Error::NoKey),
        1 => 0,
        _ => {
            let infos: Vec<KeyInfo> = found.iter().map(|(_, i)| i.clone()).collect();
            prompt.choose_key(&infos).filter(|i| *i < found.len()).ok_or(Error::Cancelled)?
        }
    };
    let (token, info) = found.swap_remove(index);
    if !info.versions.iter().any(|v| v.starts_with("FIDO_2")) {
        return Err(Error::UnsupportedKey(format!("{} speaks only {:?}", info.label, info.versions)));
    }
    Ok((token, info))
}
