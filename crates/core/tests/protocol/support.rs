//! Fixtures shared by the protocol tests: a fixed clock, sample operations and a
//! sample policy.

use std::collections::{BTreeMap, BTreeSet};

use countersign_core::operation::*;
use countersign_core::policy::*;
pub use countersign_core::verdict::*;
use countersign_core::{Amount, Timestamp};

pub fn t(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

pub fn amt(s: &str) -> Amount {
    Amount::parse(s).unwrap()
}

/// The fixed "now" of these tests.
pub fn now() -> Timestamp {
    t("2026-11-28T12:00:00Z")
}

pub fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

pub fn api_key_initiator() -> Initiator {
    Initiator::ApiKey { key_id: id("key_mm1"), owner: id("bob"), source_ip: "203.0.113.7".parse().unwrap() }
}

pub fn withdrawal_action(asset: &str, amount: &str, usd: &str) -> Action {
    Action::Withdrawal(Withdrawal {
        account: id("acct_main"),
        asset: id(asset),
        network: id("ethereum"),
        amount: amt(amount),
        destination: Destination { address: "0x8ba1f109551bD432803012645Ac136ddd64DBA72".into(), memo: None },
        reference_value: ReferenceValue { currency: id("USD"), amount: amt(usd) },
    })
}

pub fn operation(action: Action) -> Operation {
    Operation {
        id: id("op_01JDXK6Y3M0000000000000001"),
        created_at: t("2026-11-28T12:00:00Z"),
        expires_at: t("2026-11-28T13:00:00Z"),
        policy_version: 7,
        initiator: api_key_initiator(),
        action,
    }
}

pub fn withdrawal() -> Operation {
    operation(withdrawal_action("ETH", "12.5", "37655.875"))
}

pub fn quorum(groups: &[(&str, u32)]) -> Quorum {
    Quorum {
        groups: groups.iter().map(|(g, min)| GroupQuorum { group: id(g), min: *min }).collect(),
        rejections_to_veto: 1,
    }
}

/// A realistic policy: small withdrawals pass, ≥ $10k needs 2 traders, ≥ $1M needs
/// 2 traders and 1 risk officer.
pub fn policy() -> Policy {
    Policy {
        version: 7,
        reference_currency: id("USD"),
        approval_ttl_seconds: 3600,
        deny: vec![DenyRule {
            reason: "sanctioned address".into(),
            kind: None,
            asset: None,
            network: None,
            account: None,
            api_key: None,
            destination: Some("0x000000000000000000000000000000000000dEaD".into()),
            min_reference_value: None,
        }],
        withdrawal_tiers: vec![
            Tier {
                name: "large".into(),
                min_reference_value: Some(amt("10000")),
                min_asset_amount: BTreeMap::from([(id("BTC"), amt("0.5"))]),
                quorum: quorum(&[("traders", 2)]),
            },
            Tier {
                name: "treasury".into(),
                min_reference_value: Some(amt("1000000")),
                min_asset_amount: BTreeMap::new(),
                quorum: quorum(&[("traders", 2), ("risk", 1)]),
            },
        ],
        withdrawal_quorum: quorum(&[("traders", 1)]),
        allowlist: AllowlistRule {
            enforced: true,
            on_breach: Breach::RequireApproval,
            cool_off_seconds: 24 * 3600,
        },
        velocity: vec![
            VelocityLimit {
                name: "per-key hourly".into(),
                scope: VelocityScope::ApiKey,
                window_seconds: 3600,
                max_reference_value: Some(amt("50000")),
                max_count: Some(20),
                on_breach: Breach::RequireApproval,
            },
            VelocityLimit {
                name: "per-account daily".into(),
                scope: VelocityScope::Account,
                window_seconds: 86400,
                max_reference_value: Some(amt("250000")),
                max_count: None,
                on_breach: Breach::RequireApproval,
            },
        ],
        high_risk: Some(RiskRule { min_score: 70, quorum: quorum(&[("risk", 1)]) }),
        admin_quorum: quorum(&[("admins", 2)]),
    }
}

/// An allowlisted, cooled-off destination and no history: nothing to flag.
pub fn calm_context() -> Context<'static> {
    Context {
        destination: DestinationStatus::Allowlisted { since: t("2026-01-01T00:00:00Z") },
        recent: &[],
        risk_score: 0,
        key_limit: None,
    }
}

/// Every kind of operation, for vectors and property tests.
pub fn every_kind() -> Vec<(&'static str, Operation)> {
    let approver = Initiator::Approver { approver: id("alice") };
    let admin_op = |action| Operation { initiator: approver.clone(), ..operation(action) };
    vec![
        ("withdrawal-eth", withdrawal()),
        (
            "withdrawal-xrp-memo-ipv6",
            Operation {
                initiator: Initiator::ApiKey {
                    key_id: id("key_desk.7"),
                    owner: id("carol"),
                    source_ip: "2001:db8:0:0:0:0:0:42".parse().unwrap(),
                },
                ..operation(Action::Withdrawal(Withdrawal {
                    account: id("acct_otc"),
                    asset: id("XRP"),
                    network: id("xrpl"),
                    amount: amt("250000.000001"),
                    destination: Destination {
                        address: "rPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY".into(),
                        memo: Some("3141592653".into()),
                    },
                    reference_value: ReferenceValue { currency: id("USD"), amount: amt("127500.0000005") },
                }))
            },
        ),
        (
            "allowlist-add-unicode-label",
            admin_op(Action::AllowlistAdd(AllowlistAdd {
                account: id("acct_main"),
                network: id("bitcoin"),
                destination: Destination {
                    address: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq".into(),
                    memo: None,
                },
                label: "Cold storage \"Zürich\" \\ vault ❄ 3".into(),
            })),
        ),
        (
            "policy-update",
            admin_op(Action::PolicyUpdate(PolicyUpdate { policy: Policy { version: 8, ..policy() } })),
        ),
        (
            "approver-enroll",
            admin_op(Action::ApproverEnroll(ApproverEnroll {
                approver: id("dave"),
                display_name: "Dave Okafor".into(),
                roles: BTreeSet::from([Role::Approver, Role::Admin]),
                groups: BTreeSet::from([id("risk"), id("traders")]),
                credential: CredentialSummary {
                    credential_id: "kZ8n0c2mYH1cXv7pJ3m5Qw".into(),
                    key_kind: KeyKind::Fido2,
                    aaguid: Some("ee882879-721c-4913-9775-3dfcce97072a".into()),
                    public_key_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                        .into(),
                    label: "blue YubiKey 5C".into(),
                },
            })),
        ),
        (
            "approver-revoke",
            admin_op(Action::ApproverRevoke(ApproverRevoke {
                approver: id("dave"),
                credential_id: Some("kZ8n0c2mYH1cXv7pJ3m5Qw".into()),
                reason: "key lost on a train".into(),
            })),
        ),
        (
            "api-key-create",
            admin_op(Action::ApiKeyCreate(ApiKeyCreate {
                key_id: id("key_mm2"),
                owner: id("bob"),
                label: "market maker 2, Frankfurt".into(),
                scopes: BTreeSet::from([Scope::Read, Scope::Withdraw]),
                algorithm: SigningAlgorithm::Ed25519,
                // RFC 8032 §7.1 test 1's public key.
                public_key: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
                ip_allowlist: BTreeSet::from(["198.51.100.0/24".into(), "203.0.113.7/32".into()]),
                max_reference_value: Some(amt("250000")),
                expires_at: Some(t("2027-05-28T00:00:00Z")),
            })),
        ),
        (
            "unfreeze",
            admin_op(Action::Unfreeze(Unfreeze {
                freeze_started: t("2026-11-27T09:00:00Z"),
                reason: "stolen key revoked; incident 2026-11-27 closed".into(),
            })),
        ),
    ]
}
