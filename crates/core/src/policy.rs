//! Policy: which operations pass, which need people, which are refused.
//!
//! [`evaluate`] is a pure function of the policy, the proposed action, the context
//! the gateway gathered (allowlist status, recent transfers, risk score) and `now`.
//! It has no clock, no storage and no randomness, so every rule can be tested at its
//! exact boundary.
//!
//! Boundaries, all inclusive where money is at stake:
//! - a withdrawal whose value is **at or above** a tier threshold needs that tier's quorum;
//! - a velocity window of `w` seconds covers transfers at `t` with `now - w < t <= now`,
//!   and a limit is breached when `used + this` is **greater than** the maximum;
//! - an allowlisted destination is usable from `since + cool_off` (inclusive);
//! - the operation expires at `now + approval_ttl_seconds`; at that instant it is expired.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::error::{Error, Result};
use crate::id::{AccountId, ApiKeyId, AssetCode, GroupName, NetworkId};
use crate::operation::{
    Action, Initiator, MAX_TEXT_LEN, OperationKind, Withdrawal, check_address, check_text,
};
use crate::timestamp::Timestamp;

/// Largest `min` in one group of a quorum.
pub const MAX_GROUP_MIN: u32 = 64;
/// Longest approval window: 30 days.
pub const MAX_APPROVAL_TTL_SECONDS: u64 = 30 * 24 * 3600;
/// Longest velocity window or allowlist cool-off: 400 days. (Every integer in the
/// canonical form stays far below 2^53, where JSON numbers stop being exact.)
pub const MAX_WINDOW_SECONDS: u64 = 400 * 24 * 3600;

/// A complete, versioned policy. Changing it is itself an operation that needs quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Increases by one with every accepted change.
    pub version: u32,
    /// The currency that `reference_value`s and thresholds are written in.
    pub reference_currency: AssetCode,
    /// How long an operation waits for decisions before it expires.
    pub approval_ttl_seconds: u64,
    /// Refuse outright what matches any of these.
    pub deny: Vec<DenyRule>,
    /// Withdrawals at or above a tier's threshold need its quorum; all matching tiers
    /// apply and their quorums are combined (see [`Quorum::merge`]).
    pub withdrawal_tiers: Vec<Tier>,
    /// The quorum for a withdrawal held for a reason other than its amount (new
    /// destination, velocity, risk); combined with any tier quorum.
    pub withdrawal_quorum: Quorum,
    /// What happens to destinations that are not (yet) allowlisted.
    pub allowlist: AllowlistRule,
    /// Rolling-window limits per API key and per account.
    pub velocity: Vec<VelocityLimit>,
    /// Extra approval for risky-looking requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_risk: Option<RiskRule>,
    /// The quorum for every operation that is not a withdrawal (allowlist, policy,
    /// approvers, API keys, unfreeze).
    pub admin_quorum: Quorum,
}

/// Who must approve: M-of-N in each group, AND across groups, each person filling
/// at most one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quorum {
    /// Requirements that must all be met.
    pub groups: Vec<GroupQuorum>,
    /// Distinct rejections that end the operation; 1 means one rejection vetoes.
    pub rejections_to_veto: u32,
}

/// `min` distinct approvals from members of `group`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupQuorum {
    /// The group.
    pub group: GroupName,
    /// How many of its members.
    pub min: u32,
}

impl Quorum {
    /// The neutral element of [`Quorum::merge`]: needs nobody, never vetoes. Never a
    /// valid policy quorum ([`crate::tally`] refuses to approve with it).
    pub const NOBODY: Quorum = Quorum { groups: Vec::new(), rejections_to_veto: u32::MAX };

    /// The stricter combination of two quorums: per group the larger `min`, and the
    /// smaller veto threshold. Groups are sorted by name.
    #[must_use]
    pub fn merge(&self, other: &Quorum) -> Quorum {
        let mut mins: BTreeMap<&GroupName, u32> = BTreeMap::new();
        for g in self.groups.iter().chain(&other.groups) {
            let m = mins.entry(&g.group).or_insert(0);
            *m = (*m).max(g.min);
        }
        Quorum {
            groups: mins.into_iter().map(|(group, min)| GroupQuorum { group: group.clone(), min }).collect(),
            rejections_to_veto: self.rejections_to_veto.min(other.rejections_to_veto),
        }
    }

    /// Distinct people needed in total.
    #[must_use]
    pub fn people_needed(&self) -> u64 {
        self.groups.iter().map(|g| u64::from(g.min)).sum()
    }

    fn validate(&self, field: &str) -> Result<()> {
        let invalid = |m: &str| Err(Error::InvalidPolicy(format!("{field}: {m}")));
        if self.groups.is_empty() {
            return invalid("a quorum needs at least one group");
        }
        let mut seen = BTreeSet::new();
        for g in &self.groups {
            if g.min == 0 || g.min > MAX_GROUP_MIN {
                return invalid(&format!("min for {} must be 1..={MAX_GROUP_MIN}", g.group));
            }
            if !seen.insert(&g.group) {
                return invalid(&format!("group {} listed twice", g.group));
            }
        }
        if self.rejections_to_veto == 0 {
            return invalid("rejections_to_veto must be at least 1");
        }
        Ok(())
    }
}

/// A withdrawal amount tier. Matches when the value is at or above **either**
/// threshold that is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Shown to approvers ("large", "treasury").
    pub name: String,
    /// At or above this value in the reference currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_reference_value: Option<Amount>,
    /// At or above this many units of the asset (per asset).
    pub min_asset_amount: BTreeMap<AssetCode, Amount>,
    /// The quorum this tier needs.
    pub quorum: Quorum,
}

impl Tier {
    fn matches(&self, w: &Withdrawal) -> bool {
        let by_value = self.min_reference_value.is_some_and(|min| w.reference_value.amount >= min);
        let by_units = self.min_asset_amount.get(&w.asset).is_some_and(|min| w.amount >= *min);
        by_value || by_units
    }
}

/// What to do when a rule is breached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breach {
    /// Hold it for the withdrawal quorum.
    RequireApproval,
    /// Refuse it.
    Deny,
}

/// Destination allowlist handling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistRule {
    /// Whether the allowlist is enforced.
    pub enforced: bool,
    /// What happens to a destination that is not allowlisted or still cooling off.
    pub on_breach: Breach,
    /// A newly allowlisted address becomes usable this many seconds after it was added.
    pub cool_off_seconds: u64,
}

/// Whose transfers a velocity limit adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VelocityScope {
    /// Transfers initiated with the same API key.
    ApiKey,
    /// Transfers out of the same account.
    Account,
}

/// A rolling-window budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocityLimit {
    /// Shown to approvers ("per-key hourly").
    pub name: String,
    /// Per API key or per account.
    pub scope: VelocityScope,
    /// Window length.
    pub window_seconds: u64,
    /// Most reference-currency value in the window, this transfer included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reference_value: Option<Amount>,
    /// Most transfers in the window, this one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u32>,
    /// What happens beyond the budget.
    pub on_breach: Breach,
}

/// Refuse what matches every matcher that is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyRule {
    /// Told to the initiator and shown in the audit chain.
    pub reason: String,
    /// Operation kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<OperationKind>,
    /// Withdrawal asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<AssetCode>,
    /// Withdrawal or allowlist network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkId>,
    /// Withdrawal or allowlist account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountId>,
    /// Initiating API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyId>,
    /// Withdrawal or allowlist destination address, compared ignoring ASCII case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Withdrawals at or above this reference value (a hard cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_reference_value: Option<Amount>,
}

impl DenyRule {
    fn matches(&self, initiator: &Initiator, action: &Action) -> bool {
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

/// Extra quorum when the gateway's risk score is high.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskRule {
    /// Scores at or above this (0–100) trigger the rule.
    pub min_score: u32,
    /// Combined with whatever else the withdrawal needs.
    pub quorum: Quorum,
}

impl Policy {
    /// Check the policy is self-consistent.
    ///
    /// # Errors
    /// [`Error::InvalidPolicy`] naming the offending part.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::InvalidPolicy(m));
        if self.version == 0 {
            return invalid("version starts at 1".into());
        }
        if self.approval_ttl_seconds == 0 || self.approval_ttl_seconds > MAX_APPROVAL_TTL_SECONDS {
            return invalid(format!("approval_ttl_seconds must be 1..={MAX_APPROVAL_TTL_SECONDS}"));
        }
        if self.allowlist.cool_off_seconds > MAX_WINDOW_SECONDS {
            return invalid(format!("allowlist.cool_off_seconds must be at most {MAX_WINDOW_SECONDS}"));
        }
        self.withdrawal_quorum.validate("withdrawal_quorum")?;
        self.admin_quorum.validate("admin_quorum")?;
        for t in &self.withdrawal_tiers {
            t.quorum.validate(&format!("tier {:?}", t.name))?;
            if t.min_reference_value.is_none() && t.min_asset_amount.is_empty() {
                return invalid(format!("tier {:?} has no threshold", t.name));
            }
        }
        for v in &self.velocity {
            if v.window_seconds == 0 || v.window_seconds > MAX_WINDOW_SECONDS {
                return invalid(format!(
                    "velocity {:?}: window_seconds must be 1..={MAX_WINDOW_SECONDS}",
                    v.name
                ));
            }
            if v.max_reference_value.is_none() && v.max_count.is_none() {
                return invalid(format!("velocity {:?}: set max_reference_value or max_count", v.name));
            }
        }
        if let Some(r) = &self.high_risk {
            if r.min_score > 100 {
                return invalid("high_risk.min_score must be 0..=100".into());
            }
            r.quorum.validate("high_risk.quorum")?;
        }
        for text in self
            .deny
            .iter()
            .map(|d| &d.reason)
            .chain(self.withdrawal_tiers.iter().map(|t| &t.name))
            .chain(self.velocity.iter().map(|v| &v.name))
        {
            if text.is_empty() || check_text("name", text).is_err() {
                return invalid(format!(
                    "name or reason {text:?}: 1..={MAX_TEXT_LEN} characters, no control or invisible formatting characters"
                ));
            }
        }
        for d in self.deny.iter().filter_map(|d| d.destination.as_ref()) {
            check_address("deny.destination", d).map_err(|e| Error::InvalidPolicy(e.to_string()))?;
        }
        Ok(())
    }
}

/// Whether a withdrawal's destination is on the account's allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DestinationStatus {
    /// Not on the allowlist.
    NotAllowlisted,
    /// On the allowlist since this instant.
    Allowlisted {
        /// When it was added.
        since: Timestamp,
    },
}

/// A recent withdrawal that counts against velocity budgets: one that was released
/// or is still pending (denied, rejected and expired ones do not count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentTransfer {
    /// When the gateway received it.
    pub at: Timestamp,
    /// The key that initiated it.
    pub api_key: Option<ApiKeyId>,
    /// The account the funds left.
    pub account: AccountId,
    /// Its value in the reference currency.
    pub reference_value: Amount,
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
    HighRisk {
        /// The score.
        score: u32,
    },
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
