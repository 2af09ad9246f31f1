//! The person at the key, reached through the window: prompts go out as
//! `key-prompt` events, answers come back through the `answer_*` commands.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use countersign_keys::{KeyInfo, Pin, PinRequest, Prompt};
use serde_json::json;
use tauri::{AppHandle, Emitter};

/// How long a PIN dialog waits for the person.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// The answering side, held by the commands.
#[derive(Debug, Clone)]
pub struct Answers {
    pins: Sender<Option<String>>,
    confirms: Sender<bool>,
    choices: Sender<Option<usize>>,
}

impl Answers {
    pub fn choice(&self, index: Option<usize>) {
        let _ = self.choices.send(index);
    }
    pub fn pin(&self, pin: Option<String>) {
        let _ = self.pins.send(pin);
    }
    pub fn confirm(&self, yes: bool) {
        let _ = self.confirms.send(yes);
    }
}

/// The asking side, handed to key ceremonies.
#[derive(Debug)]
pub struct WindowPrompt {
    app: AppHandle,
    pins: Mutex<Receiver<Option<String>>>,
    confirms: Mutex<Receiver<bool>>,
    choices: Mutex<Receiver<Option<usize>>>,
}

pub fn pair(app: AppHandle) -> (WindowPrompt, Answers) {
    let (pin_tx, pin_rx) = channel();
    let (confirm_tx, confirm_rx) = channel();
    let (choice_tx, choice_rx) = channel();
    (
        WindowPrompt {
            app,
            pins: Mutex::new(pin_rx),
            confirms: Mutex::new(confirm_rx),
            choices: Mutex::new(choice_rx),
        },
        Answers { pins: pin_tx, confirms: confirm_tx, choices: choice_tx },
    )
}

impl WindowPrompt {
    fn emit(&self, payload: serde_json::Value) {
        if let Err(e) = self.app.emit("key-prompt", payload) {
            tracing::warn!(error = %e, "cannot reach the window");
        }
    }

    /// Show `payload` and wait for one answer. Answers left over from an earlier
    /// prompt are dropped first, before the window can answer this one.
    fn ask<T>(&self, rx: &Mutex<Receiver<T>>, payload: serde_json::Value) -> Option<T> {
        let rx = rx.lock().ok()?;
        while rx.try_recv().is_ok() {}
        self.emit(payload);
        // Timed out or closed: no answer, which cancels the ceremony.
        rx.recv_timeout(ANSWER_TIMEOUT).ok()
    }
}

impl Prompt for WindowPrompt {
    fn choose_key(&self, keys: &[KeyInfo]) -> Option<usize> {
        let payload = json!({ "kind": "choose-key", "keys": keys });
        self.ask(&self.choices, payload).flatten().filter(|i| *i < keys.len())
    }

    fn pin(&self, request: &PinRequest) -> Option<Pin> {
        let payload = json!({
            "kind": "pin",
            "retriesLeft": request.retries_left,
            "previousWrong": request.previous_attempt_wrong,
        });
        self.ask(&self.pins, payload).flatten().filter(|p| !p.is_empty()).map(Pin::new)
    }

    fn confirm_last_retry(&self) -> bool {
        self.ask(&self.confirms, json!({ "kind": "last-retry" })).unwrap_or(false)
    }

    fn touch(&self) {
        self.emit(json!({ "kind": "touch" }));
    }

    fn processing(&self) {
        self.emit(json!({ "kind": "processing" }));
    }
}
