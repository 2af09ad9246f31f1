//! The terminal as the [`Prompt`], shared by the examples.
#![allow(dead_code)]

use std::io::Write;

use countersign_keys::{KeyInfo, Pin, PinRequest, Prompt};

/// The terminal as the [`Prompt`].
#[derive(Debug)]
pub struct Terminal;

pub fn ask(question: &str) -> Option<String> {
    print!("{question}");
    std::io::stdout().flush().ok()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).ok()?;
    Some(line.trim().to_owned())
}

impl Prompt for Terminal {
    fn choose_key(&self, keys: &[KeyInfo]) -> Option<usize> {
        for (n, k) in keys.iter().enumerate() {
            println!("  [{n}] {}", describe(k));
        }
        ask("Which key? ")?.parse().ok()
    }
    fn pin(&self, r: &PinRequest) -> Option<Pin> {
        if r.previous_attempt_wrong {
            println!("Wrong PIN.");
        }
        let retries = r.retries_left.map(|n| format!(" ({n} retries left)")).unwrap_or_default();
        rpassword::prompt_password(format!("PIN{retries}: ")).ok().filter(|p| !p.is_empty()).map(Pin::new)
    }
    fn confirm_last_retry(&self) -> bool {
        println!("ONE PIN retry is left: a wrong PIN now blocks this key for good.");
        ask("Type 'spend it' to continue: ").as_deref() == Some("spend it")
    }
    fn touch(&self) {
        println!("Touch your key now.");
    }
    fn processing(&self) {
        println!("…");
    }
}

pub fn describe(k: &KeyInfo) -> String {
    format!(
        "{}{} aaguid={} firmware={} versions={:?} pin={} retries={} credProtect={}",
        if k.software { "SOFTWARE KEY (not a security key) " } else { "" },
        k.label,
        k.aaguid.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        k.firmware.as_deref().unwrap_or("-"),
        k.versions,
        if k.pin_set { "set" } else { "NOT SET" },
        k.pin_retries.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
        k.cred_protect,
    )
}
