//! Rate limits for what anyone can call without a session: starting a login or an
//! enrollment. Per source address and per person named, in fixed one-minute
//! windows, per gateway instance; beyond, `429 ceremony.rate_limited` at once and
//! nothing stored. Together with the cap on outstanding ceremonies
//! (`max_outstanding_ceremonies`), a flood of `login/start` cannot grow the
//! database or starve freezes and decisions (`review::a_login_flood_does_not_stop_a_freeze`).
//! The ceremonies apply both in `approvers::admit`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use countersign_core::Timestamp;

use crate::error::{Error, Result};

/// Fixed one-minute windows of counts, by key.
#[derive(Debug, Default)]
pub struct CeremonyLimits {
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

/// Keys kept before old windows are dropped.
const MAX_KEYS: usize = 100_000;

impl CeremonyLimits {
    /// Count one start for `source` and (when named) `person`.
    ///
    /// # Errors
    /// `429 ceremony.rate_limited` when either is over its limit this minute.
    pub fn admit(
        &self,
        source: std::net::IpAddr,
        person: Option<&str>,
        per_source: u32,
        per_person: u32,
        now: Timestamp,
    ) -> Result<()> {
        let minute = now.unix().div_euclid(60);
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() > MAX_KEYS {
            windows.retain(|_, (m, _)| *m == minute);
        }
        let mut over = |key: String, limit: u32| {
            let slot = windows.entry(key).or_insert((minute, 0));
            if slot.0 != minute {
                *slot = (minute, 0);
            }
            if slot.1 >= limit {
                return true;
            }
            slot.1 += 1;
            false
        };
        // IPv6 sources are limited per /64 (one host usually holds the whole block).
        let source_key = match source {
            std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("source:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            std::net::IpAddr::V6(v6) => {
                format!("source:{}", v6.to_ipv4_mapped().map_or(source, std::net::IpAddr::V4))
            }
            v4 => format!("source:{v4}"),
        };
        if over(source_key, per_source) {
            return Err(limited(format!("too many logins or enrollments started from {source} this minute")));
        }
        if let Some(p) = person
            && over(format!("person:{p}"), per_person)
        {
            return Err(limited("too many logins started for this person this minute".into()));
        }
        Ok(())
    }
}

fn limited(message: String) -> Error {
    Error::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "ceremony.rate_limited",
        format!("{message}; retry in a minute"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_source_and_per_person_reset_each_minute() {
        let limits = CeremonyLimits::default();
        let t = Timestamp::from_unix(1_800_000_000).unwrap();
        let a = "10.0.0.1".parse().unwrap();
        let b = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            limits.admit(a, Some("alice"), 3, 5, t).unwrap();
        }
        assert_eq!(limits.admit(a, Some("bob"), 3, 5, t).unwrap_err().code, "ceremony.rate_limited");
        limits.admit(b, Some("alice"), 3, 5, t).unwrap();
        limits.admit(b, Some("alice"), 3, 5, t).unwrap();
        assert_eq!(
            limits.admit(b, Some("alice"), 3, 5, t).unwrap_err().code,
            "ceremony.rate_limited",
            "alice's five this minute are used, from any source"
        );
        limits.admit(a, Some("alice"), 3, 5, t.plus_seconds(60)).unwrap();
    }
}
