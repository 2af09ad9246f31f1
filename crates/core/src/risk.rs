//! Risk signals: how a withdrawal compares with what its API key normally does.
//!
//! The gateway gathers the key's last 30 days (at most its latest
//! [`BASELINE_SAMPLES`] withdrawals) and calls [`assess`]; the signals are
//! shown on the approval card and the score (0–100) feeds the policy's
//! `high_risk` rule. Pure: `now` is a parameter.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::timestamp::Timestamp;

/// How far back the baseline looks.
pub const BASELINE_SECONDS: i64 = 30 * 24 * 3600;
/// Fewer past withdrawals than this and amount/hour baselines are not trusted.
pub const MIN_BASELINE: usize = 5;
/// At most this many of the key's latest withdrawals form its baseline: enough for a
/// p95, and intake's cost stays flat however busy the key is.
pub const BASELINE_SAMPLES: usize = 1000;

/// One earlier withdrawal by the same API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastWithdrawal {
    /// When it was received.
    pub at: Timestamp,
    /// Its reference-currency value.
    pub reference_value: Amount,
    /// The address it came from.
    pub source_ip: IpAddr,
}

/// What the gateway knows about the request and the key.
#[derive(Debug, Clone)]
pub struct RiskInput<'a> {
    /// When the key was created.
    pub key_created_at: Timestamp,
    /// The key's withdrawals (older than 30 days are ignored).
    pub history: &'a [PastWithdrawal],
    /// Whether the account has withdrawn to this destination before.
    pub destination_used_before: bool,
    /// The request's source address.
    pub source_ip: IpAddr,
    /// The request's reference-currency value.
    pub reference_value: Amount,
    /// Share of the key's tightest velocity value budget used, this request included.
    pub velocity_used_percent: Option<u32>,
}

/// One reason for concern, with the points it adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum RiskSignal {
    /// The account never sent to this destination.
    NewDestination,
    /// The key has too little history for a baseline.
    NoBaseline {
        /// Withdrawals in the last 30 days.
        samples: u32,
    },
    /// The amount is above the key's 95th percentile.
    AboveP95 {
        /// The key's 30-day median value.
        median: Amount,
        /// The key's 30-day 95th-percentile value.
        p95: Amount,
    },
    /// The request comes from an address the key has not used in 30 days.
    NewSourceIp {
        /// The address.
        ip: IpAddr,
    },
    /// The key has not withdrawn at this hour of day (UTC) in 30 days.
    UnusualHour {
        /// Hour of day, UTC.
        hour: u32,
    },
    /// Most of a velocity budget is used.
    VelocityBudget {
        /// Percent used, this request included.
        used_percent: u32,
    },
    /// The key is less than a week old.
    NewKey {
        /// Whole days since creation.
        age_days: u32,
    },
}

impl RiskSignal {
    /// Points added to the score.
    #[must_use]
    pub fn points(&self) -> u32 {
        match self {
            RiskSignal::NewDestination => 25,
            RiskSignal::NoBaseline { .. } => 10,
            RiskSignal::AboveP95 { .. } => 25,
            RiskSignal::NewSourceIp { .. } => 25,
            RiskSignal::UnusualHour { .. } => 10,
            RiskSignal::VelocityBudget { .. } => 15,
            RiskSignal::NewKey { .. } => 15,
        }
    }
}

/// The score and the signals behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskAssessment {
    /// 0 (normal) to 100 (alarming): the sum of the signals' points, capped.
    pub score: u32,
    /// What was noticed.
    pub signals: Vec<RiskSignal>,
}

fn hour_of_day(t: Timestamp) -> u32 {
    u32::try_from(t.unix().rem_euclid(86_400) / 3600).unwrap_or(0)
}

/// Nearest-rank percentile of sorted values (`p` in 1..=100).
fn percentile(sorted: &[Amount], p: usize) -> Option<Amount> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// Assess a withdrawal.
#[must_use]
pub fn assess(input: &RiskInput<'_>, now: Timestamp) -> RiskAssessment {
    let since = now.minus_seconds(BASELINE_SECONDS);
    let recent: Vec<&PastWithdrawal> = input.history.iter().filter(|w| w.at > since && w.at <= now).collect();
    let mut signals = Vec::new();

    if !input.destination_used_before {
        signals.push(RiskSignal::NewDestination);
    }
    if recent.len() < MIN_BASELINE {
        signals.push(RiskSignal::NoBaseline { samples: u32::try_from(recent.len()).unwrap_or(u32::MAX) });
    } else {
        let mut values: Vec<Amount> = recent.iter().map(|w| w.reference_value).collect();
        values.sort();
        if let (Some(median), Some(p95)) = (percentile(&values, 50), percentile(&values, 95))
            && input.reference_value > p95
        {
            signals.push(RiskSignal::AboveP95 { median, p95 });
        }
        let hour = hour_of_day(now);
        if !recent.iter().any(|w| hour_of_day(w.at) == hour) {
            signals.push(RiskSignal::UnusualHour { hour });
        }
    }
    if !recent.iter().any(|w| w.source_ip == input.source_ip) {
        signals.push(RiskSignal::NewSourceIp { ip: input.source_ip });
    }
    if let Some(used_percent) = input.velocity_used_percent.filter(|p| *p >= 80) {
        signals.push(RiskSignal::VelocityBudget { used_percent });
    }
    let age_days = now.seconds_since(input.key_created_at).max(0) / 86_400;
    if age_days < 7 {
        signals.push(RiskSignal::NewKey { age_days: u32::try_from(age_days).unwrap_or(0) });
    }
    let score = signals.iter().map(RiskSignal::points).sum::<u32>().min(100);
    RiskAssessment { score, signals }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(1_795_867_200 + s).unwrap() // 2026-11-28T12:00:00Z
    }

    fn usd(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn history() -> Vec<PastWithdrawal> {
        // Ten withdrawals of $1,000..$10,000 over the past ten days at 12:xx UTC from one IP.
        (1..=10)
            .map(|i| PastWithdrawal {
                at: t(-86_400 * i + 60),
                reference_value: usd(&(i * 1000).to_string()),
                source_ip: ip("203.0.113.7"),
            })
            .collect()
    }

    fn input<'a>(history: &'a [PastWithdrawal], value: &str) -> RiskInput<'a> {
        RiskInput {
            key_created_at: t(-90 * 86_400),
            history,
            destination_used_before: true,
            source_ip: ip("203.0.113.7"),
            reference_value: usd(value),
            velocity_used_percent: Some(10),
        }
    }

    #[test]
    fn usual_behaviour_scores_zero() {
        let h = history();
        assert_eq!(assess(&input(&h, "5000"), t(0)), RiskAssessment { score: 0, signals: vec![] });
    }

    #[test]
    fn amount_above_p95_is_flagged_with_the_baseline() {
        let h = history();
        // p95 of 1k..10k by nearest rank is 10k; 10k itself is not above it.
        assert_eq!(assess(&input(&h, "10000"), t(0)).score, 0);
        let a = assess(&input(&h, "10000.01"), t(0));
        assert_eq!(a.signals, vec![RiskSignal::AboveP95 { median: usd("5000"), p95: usd("10000") }]);
        assert_eq!(a.score, 25);
    }

    #[test]
    fn the_stolen_key_pattern_scores_high() {
        let h = history();
        let mut i = input(&h, "250000");
        i.destination_used_before = false;
        i.source_ip = ip("198.51.100.66");
        i.velocity_used_percent = Some(95);
        let a = assess(&i, t(3 * 3600)); // 15:00 UTC, never used before
        assert_eq!(a.score, 100);
        assert!(a.signals.contains(&RiskSignal::NewSourceIp { ip: ip("198.51.100.66") }));
        assert!(a.signals.contains(&RiskSignal::UnusualHour { hour: 15 }));
        assert!(a.signals.contains(&RiskSignal::VelocityBudget { used_percent: 95 }));
        assert!(a.signals.contains(&RiskSignal::NewDestination));
    }

    #[test]
    fn a_new_key_without_history_is_flagged_but_not_alarming() {
        let mut i = input(&[], "100");
        i.key_created_at = t(-2 * 86_400);
        let a = assess(&i, t(0));
        assert_eq!(
            a.signals,
            vec![
                RiskSignal::NoBaseline { samples: 0 },
                RiskSignal::NewSourceIp { ip: ip("203.0.113.7") },
                RiskSignal::NewKey { age_days: 2 }
            ]
        );
        assert_eq!(a.score, 50);
    }

    #[test]
    fn history_older_than_thirty_days_is_ignored() {
        let old: Vec<PastWithdrawal> = history()
            .into_iter()
            .map(|mut w| {
                w.at = w.at.minus_seconds(BASELINE_SECONDS);
                w
            })
            .collect();
        let a = assess(&input(&old, "5000"), t(0));
        assert!(a.signals.contains(&RiskSignal::NoBaseline { samples: 0 }));
    }
}
