//! Race windows: pauses that tests put inside the gateway's critical sections, to
//! show that a lock (not luck) keeps concurrent requests apart. Zero unless a test
//! sets them; nothing in the configuration or the API can.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where a pause can be put.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    /// Intake, between reading the key's and account's spending and storing the
    /// new withdrawal (inside the per-key and per-account lock).
    Intake,
    /// Settling an operation, between reading its decisions and moving it (inside
    /// the operation's lock).
    Settle,
}

/// The pauses in force, in milliseconds.
#[derive(Debug, Default)]
pub struct RaceWindows {
    intake_ms: AtomicU64,
    settle_ms: AtomicU64,
}

impl RaceWindows {
    fn slot(&self, window: Window) -> &AtomicU64 {
        match window {
            Window::Intake => &self.intake_ms,
            Window::Settle => &self.settle_ms,
        }
    }

    /// Widen `window` by `pause` (tests only).
    pub fn widen(&self, window: Window, pause: Duration) {
        let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
        self.slot(window).store(ms, Ordering::Relaxed);
    }

    /// Pause here if a test widened this window.
    pub async fn pause(&self, window: Window) {
        let ms = self.slot(window).load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}
