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
use crate::kind::OperationKind;
use crate::text::{MAX_TEXT_LEN, check_address, check_text};
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
