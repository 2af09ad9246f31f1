//! Judging an operation under a policy: [`evaluate`] and its [`Verdict`], with what
//! the gateway knows around the request ([`Context`]). The policy document itself is
//! [`crate::policy`]; this module is where it meets the operations.

use crate::id::ApiKeyId;

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::kind::OperationKind;
use crate::operation::{Action, Initiator, Withdrawal};
use crate::policy::{
    Breach, DenyRule, DestinationStatus, Policy, Quorum, RecentTransfer, Tier, VelocityLimit, VelocityScope,
};
use crate::timestamp::Timestamp;

impl Tier {
    fn matches(&self, w: &Withdrawal) -> bool {
        let by_value = self.min_reference_value.is_some_and(|min| w.reference_value.amount >= min);
        let by_units = self.min_asset_amount.get(&w.asset).is_some_and(|min| w.amount >= *min);
        by_value || by_units
    }
}

impl DenyRule {
    /// Whether this rule refuses `action` by `initiator` (context-free: settlement
    /// checks it again, [`crate::authority::Authority::check_since`]).
    #[must_use]
    pub fn matches(&self, initiator: &Initiator, action: &Action) -> bool {
        let (account, network, destination, asset, value) = match action {
            Action::Withdrawal(w) => (
                Some(&w.account),
                Some(&w.network),
                Some(&w.destination.address),
                Some(&w.asset),
                Some(w.reference_value.amount),
            ),
            Action::AllowlistAdd(a) => {
                (Some(&a.account), Some(&a.network), Some(&a.destination.address), None, None)
            }
            _ => (None, None, None, None, None),
        };
        let key = match initiator {
            Initiator::ApiKey { key_id, .. } => Some(key_id),
            Initiator::Approver { .. } => None,
        };
        fn is<T: PartialEq>(want: Option<&T>, have: Option<&T>) -> bool {
            want.is_none_or(|w| have == Some(w))
        }
        is(self.kind.as_ref(), Some(&action.kind()))
            && is(self.asset.as_ref(), asset)
            && is(self.network.as_ref(), network)
            && is(self.account.as_ref(), account)
            && is(self.api_key.as_ref(), key)
            // Case-insensitive: hex (EVM) and bech32 addresses have case-only spellings
            // of one address. For case-sensitive (base58) networks this can only deny more.
            && self.destination.as_ref().is_none_or(|d| destination.is_some_and(|have| have.eq_ignore_ascii_case(d)))
            && self.min_reference_value.is_none_or(|min| value.is_some_and(|v| v >= min))
    }
}

/// What the gateway knows around a request.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// Allowlist status of the destination (withdrawals only).
    pub destination: DestinationStatus,
    /// Withdrawals by the same key or from the same account; older ones are ignored.
    pub recent: &'a [RecentTransfer],
    /// 0 (normal) to 100 (alarming), from the risk signals.
    pub risk_score: u32,
    /// The initiating API key's own limit per request, in the reference currency
    /// (`None`: none). A withdrawal above it is denied before any other rule.
    pub key_limit: Option<Amount>,
}

/// Why an operation needs approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Its amount reached a tier.
    AmountTier {
        /// The tier's name.
        tier: String,
    },
    /// The destination is not on the allowlist.
    DestinationNotAllowlisted,
    /// The destination is allowlisted but still cooling off.
    DestinationCoolingOff {
        /// When it becomes usable without approval.
        usable_from: Timestamp,
    },
    /// A velocity budget would be exceeded.
    VelocityExceeded {
        /// The limit's name.
        limit: String,
    },
    /// The risk score reached the policy's threshold.
    HighRisk { score: u32 },
    /// Administrative changes always need the admin quorum.
    AdminOperation {
        /// Which change.
        kind: OperationKind,
    },
}

/// Why an operation is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DenyReason {
    /// A deny rule matched.
    Rule {
        /// The rule's reason text.
        message: String,
    },
    /// The withdrawal's reference value is in another currency than the policy's.
    ReferenceCurrencyMismatch,
    /// An API key tried something other than a withdrawal.
    NotPermittedForApiKeys {
        /// What it tried.
        kind: OperationKind,
    },
    /// The destination is not usable and the policy refuses such withdrawals.
    DestinationNotUsable,
    /// A velocity budget with `on_breach = deny` would be exceeded.
    VelocityExceeded {
        /// The limit's name.
        limit: String,
    },
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Release without approval.
    Allow,
    /// Hold until the quorum approves, or until `expires_at`.
    RequireApproval {
        /// Who must approve.
        quorum: Quorum,
        /// When it lapses.
        expires_at: Timestamp,
        /// Why, in the order the rules were checked.
        reasons: Vec<Reason>,
    },
    /// Refuse.
    Deny {
        /// Why.
        reason: DenyReason,
    },
}

/// What a verdict does to a new operation, decided in one place for withdrawals
/// and administrative proposals alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Released at once (no approval needed).
    Release,
    /// Held for approvers until the given time.
    Hold {
        /// When it expires undecided.
        expires_at: Timestamp,
    },
    /// Refused, and recorded as denied.
    Deny,
}

impl Verdict {
    /// What this verdict does to a new operation.
    #[must_use]
    pub fn disposition(&self) -> Disposition {
        match self {
            Verdict::Allow => Disposition::Release,
            Verdict::RequireApproval { expires_at, .. } => Disposition::Hold { expires_at: *expires_at },
            Verdict::Deny { .. } => Disposition::Deny,
        }
    }
}

/// Judge an action under a policy. Pure: `now` is a parameter.
#[must_use]
pub fn evaluate(
    policy: &Policy,
    initiator: &Initiator,
    action: &Action,
    ctx: &Context<'_>,
    now: Timestamp,
) -> Verdict {
    if let (Action::Withdrawal(w), Some(max)) = (action, ctx.key_limit)
        && w.reference_value.amount > max
    {
        let message =
            format!("exceeds this API key's per-request limit of {max} {}", policy.reference_currency);
        return Verdict::Deny { reason: DenyReason::Rule { message } };
    }
    if let Some(rule) = policy.deny.iter().find(|r| r.matches(initiator, action)) {
        return Verdict::Deny { reason: DenyReason::Rule { message: rule.reason.clone() } };
    }
    let expires_at = now.plus_seconds(i64::try_from(policy.approval_ttl_seconds).unwrap_or(i64::MAX));
    let Action::Withdrawal(w) = action else {
        if matches!(initiator, Initiator::ApiKey { .. }) {
            return Verdict::Deny { reason: DenyReason::NotPermittedForApiKeys { kind: action.kind() } };
        }
        return Verdict::RequireApproval {
            quorum: Quorum::NOBODY.merge(&policy.admin_quorum),
            expires_at,
            reasons: vec![Reason::AdminOperation { kind: action.kind() }],
        };
    };
    if w.reference_value.currency != policy.reference_currency {
        return Verdict::Deny { reason: DenyReason::ReferenceCurrencyMismatch };
    }

    let mut hold = Hold::default();

    for tier in policy.withdrawal_tiers.iter().filter(|t| t.matches(w)) {
        hold.require(&tier.quorum, Reason::AmountTier { tier: tier.name.clone() });
    }

    if policy.allowlist.enforced {
        let reason = match ctx.destination {
            DestinationStatus::NotAllowlisted => Some(Reason::DestinationNotAllowlisted),
            DestinationStatus::Allowlisted { since } => {
                let cool_off = i64::try_from(policy.allowlist.cool_off_seconds).unwrap_or(i64::MAX);
                let usable_from = since.plus_seconds(cool_off);
                (now < usable_from).then_some(Reason::DestinationCoolingOff { usable_from })
            }
        };
        if let Some(reason) = reason {
            match policy.allowlist.on_breach {
                Breach::Deny => {
                    return Verdict::Deny { reason: DenyReason::DestinationNotUsable };
                }
                Breach::RequireApproval => hold.require(&policy.withdrawal_quorum, reason),
            }
        }
    }

    let key = match initiator {
        Initiator::ApiKey { key_id, .. } => Some(key_id),
        Initiator::Approver { .. } => None,
    };
    for limit in &policy.velocity {
        if velocity_exceeded(limit, w, key, ctx.recent, now) {
            match limit.on_breach {
                Breach::Deny => {
                    return Verdict::Deny {
                        reason: DenyReason::VelocityExceeded { limit: limit.name.clone() },
                    };
                }
                Breach::RequireApproval => hold.require(
                    &policy.withdrawal_quorum,
                    Reason::VelocityExceeded { limit: limit.name.clone() },
                ),
            }
        }
    }

    if let Some(rule) = &policy.high_risk
        && ctx.risk_score >= rule.min_score
    {
        let q = rule.quorum.merge(&policy.withdrawal_quorum);
        hold.require(&q, Reason::HighRisk { score: ctx.risk_score });
    }

    if hold.reasons.is_empty() {
        Verdict::Allow
    } else {
        Verdict::RequireApproval { quorum: hold.quorum, expires_at, reasons: hold.reasons }
    }
}

/// Why a withdrawal is held so far, and the combined quorum of those reasons.
struct Hold {
    quorum: Quorum,
    reasons: Vec<Reason>,
}

impl Default for Hold {
    fn default() -> Self {
        Hold { quorum: Quorum::NOBODY, reasons: Vec::new() }
    }
}

impl Hold {
    fn require(&mut self, quorum: &Quorum, reason: Reason) {
        self.quorum = self.quorum.merge(quorum);
        self.reasons.push(reason);
    }
}

/// Transfers in a limit's window and scope, this withdrawal included: `(count,
/// total value)`, the total `None` on overflow. `None` when the limit does not apply
/// (a per-key limit and an initiator without a key).
fn window_usage(
    limit: &VelocityLimit,
    w: &Withdrawal,
    key: Option<&ApiKeyId>,
    recent: &[RecentTransfer],
    now: Timestamp,
) -> Option<(u64, Option<Amount>)> {
    if limit.scope == VelocityScope::ApiKey && key.is_none() {
        return None;
    }
    let start = now.minus_seconds(i64::try_from(limit.window_seconds).unwrap_or(i64::MAX));
    let in_scope = |t: &&RecentTransfer| match limit.scope {
        VelocityScope::ApiKey => t.api_key.as_ref() == key,
        VelocityScope::Account => t.account == w.account,
    };
    let mut count: u64 = 1;
    let mut value = Some(w.reference_value.amount);
    for t in recent.iter().filter(in_scope).filter(|t| t.at > start && t.at <= now) {
        count += 1;
        value = value.and_then(|v| v.checked_add(t.reference_value));
    }
    Some((count, value))
}

/// Whether `w` would break `limit` given the recent transfers.
fn velocity_exceeded(
    limit: &VelocityLimit,
    w: &Withdrawal,
    key: Option<&ApiKeyId>,
    recent: &[RecentTransfer],
    now: Timestamp,
) -> bool {
    let Some((count, value)) = window_usage(limit, w, key, recent, now) else {
        return false;
    };
    let over_count = limit.max_count.is_some_and(|max| count > u64::from(max));
    // An overflowing sum is certainly over any budget.
    let over_value = limit.max_reference_value.is_some_and(|max| value.is_none_or(|v| v > max));
    over_count || over_value
}

/// The largest share (percent, rounded down) of any velocity value budget that `w`
/// would use, for the risk signals. `None` when no value budget applies.
#[must_use]
pub fn velocity_used_percent(
    policy: &Policy,
    initiator: &Initiator,
    w: &Withdrawal,
    recent: &[RecentTransfer],
    now: Timestamp,
) -> Option<u32> {
    let key = match initiator {
        Initiator::ApiKey { key_id, .. } => Some(key_id),
        Initiator::Approver { .. } => None,
    };
    let hundred = Amount::parse("100").ok()?;
    policy
        .velocity
        .iter()
        .filter_map(|limit| {
            let max = limit.max_reference_value.filter(|m| !m.is_zero())?;
            let (_, used) = window_usage(limit, w, key, recent, now)?;
            let Some(used) = used else { return Some(u32::MAX) };
            let percent = used.checked_mul(hundred)?.as_decimal().checked_div(max.as_decimal())?;
            Some(rust_decimal::prelude::ToPrimitive::to_u32(&percent.trunc()).unwrap_or(u32::MAX))
        })
        .max()
}
