//! A walk through the Countersign protocol in the terminal.
//!
//! Run with `./scripts/demo` (or `cargo run -p countersign-core --example protocol_demo`).
//! Until the gateway and desktop app exist, this is the main demo: it shows what
//! an approver signs, why a stolen API key cannot move large sums, and how a
//! tampered operation is caught. Time is fixed, so the output is reproducible.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use countersign_core::binding::client_data_json;
use countersign_core::canonical::{self, Digest};
use countersign_core::operation::*;
use countersign_core::policy::*;
use countersign_core::quorum::{CountedDecision, Roster};
use countersign_core::verdict::*;
use countersign_core::{Amount, ApprovalBinding, Decision, Tally, Timestamp, evaluate, tally};

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("valid id")
}

fn quorum(groups: &[(&str, u32)]) -> Quorum {
    Quorum {
        groups: groups.iter().map(|(g, m)| GroupQuorum { group: id(g), min: *m }).collect(),
        rejections_to_veto: 1,
    }
}

fn demo_policy() -> Policy {
    Policy {
        version: 1,
        reference_currency: id("USD"),
        approval_ttl_seconds: 3600,
        deny: vec![],
        withdrawal_tiers: vec![Tier {
            name: "large".into(),
            min_reference_value: Some(Amount::parse("10000").unwrap()),
            min_asset_amount: BTreeMap::new(),
            quorum: quorum(&[("traders", 2)]),
        }],
        withdrawal_quorum: quorum(&[("traders", 1)]),
        allowlist: AllowlistRule {
            enforced: true,
            on_breach: Breach::RequireApproval,
            cool_off_seconds: 86400,
        },
        velocity: vec![VelocityLimit {
            name: "per-key hourly".into(),
            scope: VelocityScope::ApiKey,
            window_seconds: 3600,
            max_reference_value: Some(Amount::parse("25000").unwrap()),
            max_count: Some(10),
            on_breach: Breach::RequireApproval,
        }],
        high_risk: None,
        admin_quorum: quorum(&[("admins", 2)]),
    }
}

fn withdrawal(eth: &str, usd: &str) -> Action {
    Action::Withdrawal(Withdrawal {
        account: id("acct_main"),
        asset: id("ETH"),
        network: id("ethereum"),
        amount: Amount::parse(eth).unwrap(),
        destination: Destination { address: "0x8ba1f109551bD432803012645Ac136ddd64DBA72".into(), memo: None },
        reference_value: ReferenceValue { currency: id("USD"), amount: Amount::parse(usd).unwrap() },
    })
}

fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Allow => "ALLOW — released without approval".into(),
        Verdict::Deny { reason } => format!("DENY — {reason:?}"),
        Verdict::RequireApproval { quorum, reasons, expires_at } => {
            let groups: Vec<String> =
                quorum.groups.iter().map(|g| format!("{} of {}", g.min, g.group)).collect();
            format!("HOLD for {} (until {expires_at}) because {reasons:?}", groups.join(" AND "))
        }
    }
}

fn main() {
    let now = Timestamp::parse("2026-11-28T12:00:00Z").unwrap();
    let policy = demo_policy();
    let thief = Initiator::ApiKey {
        key_id: id("key_mm1"),
        owner: id("bob"),
        source_ip: "203.0.113.7".parse().unwrap(),
    };
    let allowlisted = Context {
        destination: DestinationStatus::Allowlisted {
            since: Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
        },
        recent: &[],
        risk_score: 0,
        key_limit: None,
    };

    println!("COUNTERSIGN protocol demo (CLI; the desktop app and gateway are not built yet)\n");
    println!("1. A trading bot's API key asks for withdrawals. Policy v{} judges each:", policy.version);
    for (eth, usd) in [("1", "3012.47"), ("12.5", "37655.875")] {
        let v = evaluate(&policy, &thief, &withdrawal(eth, usd), &allowlisted, now);
        println!("   {eth:>5} ETH (${usd:>10}) -> {}", describe(&v));
    }

    println!("\n2. An attacker with the stolen key drains in small steps ($2,900 each):");
    let mut history = Vec::new();
    for i in 1..=10 {
        let ctx = Context { recent: &history, ..allowlisted.clone() };
        let v = evaluate(&policy, &thief, &withdrawal("0.96", "2900"), &ctx, now);
        let released = v == Verdict::Allow;
        println!("   #{i:<2} {}", describe(&v));
        if released {
            history.push(RecentTransfer {
                at: now,
                api_key: Some(id("key_mm1")),
                account: id("acct_main"),
                reference_value: Amount::parse("2900").unwrap(),
            });
        } else {
            println!("   ...the velocity budget stops the drain: total released ${}", 2900 * history.len());
            break;
        }
    }

    println!("\n3. The large withdrawal is held. Every approver sees and signs exactly this:");
    let Verdict::RequireApproval { quorum, expires_at, .. } =
        evaluate(&policy, &thief, &withdrawal("12.5", "37655.875"), &allowlisted, now)
    else {
        unreachable!("a $37k withdrawal needs approval under the demo policy")
    };
    let op = Operation {
        id: id("op_demo_0001"),
        created_at: now,
        expires_at,
        policy_version: policy.version,
        initiator: thief.clone(),
        action: withdrawal("12.5", "37655.875"),
    };
    let bytes = canonical::encode(&op).unwrap();
    let digest = Digest::of_canonical(&bytes);
    println!("   canonical form ({} bytes): {}", bytes.len(), String::from_utf8_lossy(&bytes));
    println!("   digest:      {}", digest.to_hex());
    println!("   fingerprint: {}   <- compare this on a second channel", digest.fingerprint());

    let binding = ApprovalBinding::new(&op, Decision::Approve).unwrap();
    let cdj = client_data_json("c2VydmVyLWNoYWxsZW5nZQ", "https://gateway.example", &binding).unwrap();
    println!("\n4. The approver's hardware key signs SHA-256 of this clientDataJSON:");
    println!("   {}", String::from_utf8_lossy(&cdj));

    println!("\n5. A man in the middle shows the approver 1.25 ETH instead of 12.5:");
    let mut tampered = op.clone();
    if let Action::Withdrawal(w) = &mut tampered.action {
        w.amount = Amount::parse("1.25").unwrap();
    }
    let signed_for_tampered = ApprovalBinding::new(&tampered, Decision::Approve).unwrap();
    match signed_for_tampered.check(&op, Decision::Approve) {
        Err(e) => println!("   gateway refuses the signature: {} ({e})", e.code()),
        Ok(()) => println!("   !!! accepted — this must never happen"),
    }

    println!("\n6. Decisions arrive (bob owns the API key and does not count):");
    let mut roster = Roster::new();
    for person in ["alice", "bob", "carol"] {
        roster.add(id(person), [id("traders")]);
    }
    let mut decisions = Vec::new();
    for who in ["bob", "alice", "alice", "carol"] {
        decisions.push(CountedDecision { approver: id(who), decision: Decision::Approve });
        let t = tally(&quorum, op.initiator.responsible_person(), &roster, &decisions, op.expires_at, now);
        let state = match &t {
            Tally::Pending { progress, .. } => {
                let p: Vec<String> =
                    progress.iter().map(|g| format!("{}/{} {}", g.approved, g.needed, g.group)).collect();
                format!("pending ({})", p.join(", "))
            }
            Tally::Approved { approvers } => {
                let names: Vec<&str> = approvers.iter().map(|a| a.as_str()).collect();
                format!("APPROVED by {} -> release once", names.join(" and "))
            }
            other => format!("{other:?}"),
        };
        println!("   {who:<6} approves -> {state}");
    }
    println!("\nDone. See docs/protocol.md for the exact rules and test vectors.");
}
