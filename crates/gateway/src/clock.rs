//! The one place the gateway reads the wall clock. Everything else takes `now`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use countersign_core::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, to the second.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the edge: the only wall-clock read in the gateway
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Timestamp::from_unix(secs).unwrap_or(Timestamp::MAX)
    }
}

/// A clock that stands still until moved; for tests and deterministic replays.
#[derive(Debug, Clone)]
pub struct FixedClock(Arc<AtomicI64>);

impl FixedClock {
    /// Start at `t`.
    #[must_use]
    pub fn new(t: Timestamp) -> Self {
        FixedClock(Arc::new(AtomicI64::new(t.unix())))
    }

    /// Move forward (or back, with a negative number) by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Jump to `t`.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.unix(), Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix(self.0.load(Ordering::SeqCst)).unwrap_or(Timestamp::MAX)
    }
}
