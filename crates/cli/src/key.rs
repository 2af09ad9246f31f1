//! Which security key a command uses, and the terminal as the person at the key.

use std::io::{IsTerminal, Write};

use countersign_keys::{KeyInfo, Pin, PinRequest, Prompt};
use webauthn_authenticator_rs::usb::USBToken;

/// The key a command uses: a USB security key, or in test builds possibly the
/// software key.
#[cfg(feature = "softkey")]
pub type AnyKey = countersign_softkey::KeyOrSoft<USBToken>;
#[cfg(not(feature = "softkey"))]
pub type AnyKey = USBToken;

/// Open the key for one ceremony: `--soft-key FILE` in test builds, else the USB key
/// (asking which one when several are connected).
pub async fn open(
    soft_key: Option<&std::path::Path>,
    prompt: &Terminal,
) -> Result<AnyKey, countersign_keys::Error> {
    #[cfg(feature = "softkey")]
    if let Some(path) = soft_key {
        eprintln!(
            "\x1b[41;97m WARNING: SOFTWARE KEY {} — not a security key; tests and demo only \x1b[0m",
            path.display()
        );
        let key = countersign_softkey::SoftKey::open(path)
            .map_err(|e| countersign_keys::Error::Device(e.to_string()))?;
        return Ok(countersign_softkey::KeyOrSoft::Software(key));
    }
    #[cfg(not(feature = "softkey"))]
    if soft_key.is_some() {
        return Err(countersign_keys::Error::UnsupportedKey(
            "this build has no software key (feature softkey)".into(),
        ));
    }
    let (token, info) = countersign_keys::usb::choose(prompt).await?;
    eprintln!("Using {}", describe(&info));
    #[cfg(feature = "softkey")]
    return Ok(countersign_softkey::KeyOrSoft::Hardware(token));
    #[cfg(not(feature = "softkey"))]
    Ok(token)
}

/// One line about a key.
#[must_use]
pub fn describe(k: &KeyInfo) -> String {
    format!(
        "{}{} (firmware {}, PIN {}{})",
        if k.software { "SOFTWARE KEY " } else { "" },
        k.label,
        k.firmware.as_deref().unwrap_or("?"),
        if k.pin_set { "set" } else { "NOT set" },
        k.pin_retries.map(|n| format!(", {n} retries left")).unwrap_or_default()
    )
}

/// The terminal: PINs are read without echo from the terminal, or as lines from
/// standard input when it is not a terminal (scripts; the PIN never appears in
/// arguments or the environment).
#[derive(Debug, Default)]
pub struct Terminal;

/// One line from standard input, read a byte at a time so that nothing after the
/// line is consumed: several commands in a script can share one input.
fn read_line() -> Option<String> {
    use std::io::Read;
    let mut input: Box<dyn Read> = match std::fs::File::open("/dev/stdin") {
        Ok(f) => Box::new(f),
        Err(_) => Box::new(std::io::stdin()),
    };
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(0) if line.is_empty() => return None,
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(_) => return None,
        }
    }
    String::from_utf8(line).ok().map(|l| l.trim_end_matches('\r').to_owned())
}

impl Prompt for Terminal {
    fn choose_key(&self, keys: &[KeyInfo]) -> Option<usize> {
        for (n, k) in keys.iter().enumerate() {
            eprintln!("  [{n}] {}", describe(k));
        }
        eprint!("Which key? ");
        let _ = std::io::stderr().flush();
        read_line()?.trim().parse().ok()
    }

    fn pin(&self, r: &PinRequest) -> Option<Pin> {
        if r.previous_attempt_wrong {
            eprintln!("Wrong PIN.");
        }
        let retries = r.retries_left.map(|n| format!(" ({n} retries left)")).unwrap_or_default();
        let prompt = format!("Security key PIN{retries}: ");
        let pin = if std::io::stdin().is_terminal() {
            rpassword::prompt_password(prompt).ok()?
        } else {
            eprint!("{prompt}");
            let pin = read_line()?;
            eprintln!();
            pin
        };
        (!pin.is_empty()).then(|| Pin::new(pin))
    }

    fn confirm_last_retry(&self) -> bool {
        eprintln!("Only ONE PIN retry is left: a wrong PIN now blocks this key for good.");
        eprint!("Type 'spend it' to continue: ");
        let _ = std::io::stderr().flush();
        read_line().as_deref() == Some("spend it")
    }

    fn touch(&self) {
        eprintln!("Touch your key now.");
    }

    fn processing(&self) {}
}
