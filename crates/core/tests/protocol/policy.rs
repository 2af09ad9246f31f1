//! Every policy rule at its boundary. `now` is fixed; nothing reads the clock.

use countersign_core::operation::{Action, Initiator, OperationKind, Unfreeze};
use countersign_core::policy::*;
use countersign_core::verdict::*;
use countersign_core::{Error, Verdict, evaluate};

use crate::support::*;

fn eval(action: &Action, ctx: &Context<'_>) -> Verdict {
    evaluate(&policy(), &api_key_initiator(), action, ctx, now())
}

fn reasons(v: &Verdict) -> Vec<Reason> {
    match v {
        Verdict::RequireApproval { reasons, .. } => reasons.clone(),
        other => panic!("expected RequireApproval, got {other:?}"),
    }
}

fn quorum_of(v: &Verdict) -> Quorum {
    match v {
        Verdict::RequireApproval { quorum, .. } => quorum.clone(),
        other => panic!("expected RequireApproval, got {other:?}"),
    }
}

fn recent(at: &str, key: &str, account: &str, usd: &str) -> RecentTransfer {
    RecentTransfer { at: t(at), api_key: Some(id(key)), account: id(account), reference_value: amt(usd) }
}

#[test]
fn the_sample_policy_is_valid() {
    policy().validate().unwrap();
}

#[test]
fn small_withdrawal_to_a_cooled_allowlisted_address_is_allowed() {
    assert_eq!(eval(&withdrawal_action("ETH", "1", "3012.47"), &calm_context()), Verdict::Allow);
}

#[test]
fn amount_exactly_at_the_reference_threshold_needs_approval() {
    let at = eval(&withdrawal_action("ETH", "3.3", "10000"), &calm_context());
    assert_eq!(reasons(&at), vec![Reason::AmountTier { tier: "large".into() }]);
    assert_eq!(quorum_of(&at), quorum(&[("traders", 2)]));
    assert_eq!(eval(&withdrawal_action("ETH", "3.3", "9999.99"), &calm_context()), Verdict::Allow);
}

#[test]
fn amount_exactly_at_the_asset_unit_threshold_needs_approval() {
    // 0.5 BTC is the per-asset threshold even when the USD value is below $10k.
    let v = eval(&withdrawal_action("BTC", "0.5", "9000"), &calm_context());
    assert_eq!(reasons(&v), vec![Reason::AmountTier { tier: "large".into() }]);
    assert_eq!(eval(&withdrawal_action("BTC", "0.49999999", "8999"), &calm_context()), Verdict::Allow);
    // The BTC threshold does not apply to other assets.
    assert_eq!(eval(&withdrawal_action("ETH", "0.5", "1500"), &calm_context()), Verdict::Allow);
}

#[test]
fn matching_tiers_combine_into_the_stricter_quorum() {
    let v = eval(&withdrawal_action("ETH", "400", "1000000"), &calm_context());
    assert_eq!(
        reasons(&v),
        vec![
            Reason::AmountTier { tier: "large".into() },
            Reason::AmountTier { tier: "treasury".into() },
            Reason::VelocityExceeded { limit: "per-key hourly".into() },
            Reason::VelocityExceeded { limit: "per-account daily".into() },
        ]
    );
    assert_eq!(quorum_of(&v), quorum(&[("risk", 1), ("traders", 2)]));
}

#[test]
fn approval_window_starts_now() {
    match eval(&withdrawal_action("ETH", "10", "30000"), &calm_context()) {
        Verdict::RequireApproval { expires_at, .. } => {
            assert_eq!(expires_at, t("2026-11-28T13:00:00Z"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn deny_rules_match_on_every_field_they_set() {
    let mut sanctioned = withdrawal_action("ETH", "1", "3000");
    if let Action::Withdrawal(w) = &mut sanctioned {
        w.destination.address = "0x000000000000000000000000000000000000dEaD".into();
    }
    assert_eq!(
        eval(&sanctioned, &calm_context()),
        Verdict::Deny { reason: DenyReason::Rule { message: "sanctioned address".into() } }
    );

    let rule = |f: &dyn Fn(&mut DenyRule)| {
        let mut r = DenyRule {
            reason: "r".into(),
            kind: None,
            asset: None,
            network: None,
            account: None,
            api_key: None,
            destination: None,
            min_reference_value: None,
        };
        f(&mut r);
        Policy { deny: vec![r], ..policy() }
    };
    let denied = |p: &Policy, a: &Action| {
        matches!(evaluate(p, &api_key_initiator(), a, &calm_context(), now()), Verdict::Deny { .. })
    };
    let small = withdrawal_action("ETH", "1", "3000");
    let cases: Vec<(Policy, bool)> = vec![
        (rule(&|r| r.asset = Some(id("ETH"))), true),
        (rule(&|r| r.asset = Some(id("BTC"))), false),
        (rule(&|r| r.network = Some(id("ethereum"))), true),
        (rule(&|r| r.network = Some(id("tron"))), false),
        (rule(&|r| r.account = Some(id("acct_main"))), true),
        (rule(&|r| r.account = Some(id("acct_otc"))), false),
        (rule(&|r| r.api_key = Some(id("key_mm1"))), true),
        (rule(&|r| r.api_key = Some(id("key_other"))), false),
        (rule(&|r| r.kind = Some(OperationKind::Withdrawal)), true),
        (rule(&|r| r.kind = Some(OperationKind::AllowlistAdd)), false),
        (rule(&|r| r.min_reference_value = Some(amt("3000"))), true),
        (rule(&|r| r.min_reference_value = Some(amt("3000.01"))), false),
        // All set matchers must match.
        (
            rule(&|r| {
                r.asset = Some(id("ETH"));
                r.network = Some(id("tron"));
            }),
            false,
        ),
    ];
    for (i, (p, expect)) in cases.iter().enumerate() {
        assert_eq!(denied(p, &small), *expect, "case {i}");
    }
}

#[test]
fn deny_rule_destinations_ignore_ascii_case() {
    let mut a = withdrawal_action("ETH", "1", "3000");
    if let Action::Withdrawal(w) = &mut a {
        w.destination.address = "0x000000000000000000000000000000000000DEAD".into();
    }
    assert!(matches!(eval(&a, &calm_context()), Verdict::Deny { .. }));
}

#[test]
fn reference_value_in_another_currency_is_denied() {
    let mut a = withdrawal_action("ETH", "1", "3000");
    if let Action::Withdrawal(w) = &mut a {
        w.reference_value.currency = id("EUR");
    }
    assert_eq!(eval(&a, &calm_context()), Verdict::Deny { reason: DenyReason::ReferenceCurrencyMismatch });
}

#[test]
fn api_keys_cannot_initiate_administrative_operations() {
    let a = Action::Unfreeze(Unfreeze { freeze_started: t("2026-11-27T09:00:00Z"), reason: "x".into() });
    assert_eq!(
        eval(&a, &calm_context()),
        Verdict::Deny { reason: DenyReason::NotPermittedForApiKeys { kind: OperationKind::Unfreeze } }
    );
    let by_admin =
        evaluate(&policy(), &Initiator::Approver { approver: id("alice") }, &a, &calm_context(), now());
    assert_eq!(reasons(&by_admin), vec![Reason::AdminOperation { kind: OperationKind::Unfreeze }]);
    assert_eq!(quorum_of(&by_admin), quorum(&[("admins", 2)]));
}

#[test]
fn unlisted_destination_needs_approval() {
    let ctx = Context { destination: DestinationStatus::NotAllowlisted, ..calm_context() };
    let v = eval(&withdrawal_action("ETH", "1", "3000"), &ctx);
    assert_eq!(reasons(&v), vec![Reason::DestinationNotAllowlisted]);
    assert_eq!(quorum_of(&v), quorum(&[("traders", 1)]));
}

#[test]
fn cool_off_ends_exactly_at_since_plus_cool_off() {
    let added = now().minus_seconds(24 * 3600);
    let ctx = Context { destination: DestinationStatus::Allowlisted { since: added }, ..calm_context() };
    assert_eq!(eval(&withdrawal_action("ETH", "1", "3000"), &ctx), Verdict::Allow);
    let ctx = Context {
        destination: DestinationStatus::Allowlisted { since: added.plus_seconds(1) },
        ..calm_context()
    };
    assert_eq!(
        reasons(&eval(&withdrawal_action("ETH", "1", "3000"), &ctx)),
        vec![Reason::DestinationCoolingOff { usable_from: now().plus_seconds(1) }]
    );
}

#[test]
fn allowlist_can_deny_or_be_off() {
    let ctx = Context { destination: DestinationStatus::NotAllowlisted, ..calm_context() };
    let mut p = policy();
    p.allowlist.on_breach = Breach::Deny;
    let v = evaluate(&p, &api_key_initiator(), &withdrawal_action("ETH", "1", "3000"), &ctx, now());
    assert_eq!(v, Verdict::Deny { reason: DenyReason::DestinationNotUsable });
    p.allowlist.enforced = false;
    let v = evaluate(&p, &api_key_initiator(), &withdrawal_action("ETH", "1", "3000"), &ctx, now());
    assert_eq!(v, Verdict::Allow);
}

#[test]
fn key_velocity_window_excludes_its_start_and_includes_now() {
    // Budget: $50,000 per key per hour. $48,000 already used; $3,000 more breaks it.
    let at_start = now().minus_seconds(3600).to_string(); // outside: (now-3600, now]
    let inside = now().minus_seconds(3599).to_string();
    let history = [recent(&inside, "key_mm1", "acct_main", "48000")];
    let ctx = Context { recent: &history, ..calm_context() };
    assert_eq!(
        reasons(&eval(&withdrawal_action("ETH", "1", "3000"), &ctx)),
        vec![Reason::VelocityExceeded { limit: "per-key hourly".into() }]
    );
    let history = [recent(&at_start, "key_mm1", "acct_main", "48000")];
    let ctx = Context { recent: &history, ..calm_context() };
    assert_eq!(eval(&withdrawal_action("ETH", "1", "3000"), &ctx), Verdict::Allow);
    // Exactly at the budget is allowed; one cent over is not.
    let history = [recent(&inside, "key_mm1", "acct_main", "47000")];
    let ctx = Context { recent: &history, ..calm_context() };
    assert_eq!(eval(&withdrawal_action("ETH", "1", "3000"), &ctx), Verdict::Allow);
    assert!(matches!(eval(&withdrawal_action("ETH", "1", "3000.01"), &ctx), Verdict::RequireApproval { .. }));
    // Transfers stamped in the future (clock skew between instances) are not counted twice.
    let history = [recent(&now().plus_seconds(5).to_string(), "key_mm1", "acct_main", "48000")];
    let ctx = Context { recent: &history, ..calm_context() };
    assert_eq!(eval(&withdrawal_action("ETH", "1", "3000"), &ctx), Verdict::Allow);
}

#[test]
fn key_velocity_counts_transfers_and_ignores_other_keys() {
    let inside = now().minus_seconds(60).to_string();
    let mine: Vec<RecentTransfer> = (0..19).map(|_| recent(&inside, "key_mm1", "acct_main", "1")).collect();
    let ctx = Context { recent: &mine, ..calm_context() };
    assert_eq!(
        eval(&withdrawal_action("ETH", "0.001", "3"), &ctx),
        Verdict::Allow,
        "20th transfer is within max_count"
    );
    let mut more = mine.clone();
    more.push(recent(&inside, "key_mm1", "acct_main", "1"));
    let ctx = Context { recent: &more, ..calm_context() };
    assert_eq!(
        reasons(&eval(&withdrawal_action("ETH", "0.001", "3"), &ctx)),
        vec![Reason::VelocityExceeded { limit: "per-key hourly".into() }]
    );
    let others: Vec<RecentTransfer> =
        (0..40).map(|_| recent(&inside, "key_other", "acct_otc", "1")).collect();
    let ctx = Context { recent: &others, ..calm_context() };
    assert_eq!(eval(&withdrawal_action("ETH", "0.001", "3"), &ctx), Verdict::Allow);
}

#[test]
fn account_velocity_spans_keys_and_denies() {
    // $250,000 per account per day: many keys draining one account.
    let mut p = policy();
    p.velocity[1].on_breach = Breach::Deny;
    let eval = |a: &Action, ctx: &Context<'_>| evaluate(&p, &api_key_initiator(), a, ctx, now());
    let history: Vec<RecentTransfer> = (0..6)
        .map(|i| {
            recent(
                &now().minus_seconds(3600 * (i + 2)).to_string(),
                &format!("key_{i}"),
                "acct_main",
                "40000",
            )
        })
        .collect();
    let ctx = Context { recent: &history, ..calm_context() };
    assert_eq!(eval(&withdrawal_action("ETH", "3", "9000"), &ctx), Verdict::Allow, "240,000 + 9,000");
    assert_eq!(
        eval(&withdrawal_action("ETH", "4", "10001"), &ctx),
        Verdict::Deny { reason: DenyReason::VelocityExceeded { limit: "per-account daily".into() } }
    );
    // With the sample policy's require-approval, the same breach holds it for a quorum.
    let v = evaluate(&policy(), &api_key_initiator(), &withdrawal_action("ETH", "4", "10001"), &ctx, now());
    assert_eq!(
        reasons(&v),
        vec![
            Reason::AmountTier { tier: "large".into() },
            Reason::VelocityExceeded { limit: "per-account daily".into() }
        ]
    );
}

#[test]
fn high_risk_adds_the_risk_quorum() {
    let ctx = Context { risk_score: 70, ..calm_context() };
    let v = eval(&withdrawal_action("ETH", "1", "3000"), &ctx);
    assert_eq!(reasons(&v), vec![Reason::HighRisk { score: 70 }]);
    assert_eq!(quorum_of(&v), quorum(&[("risk", 1), ("traders", 1)]));
    let ctx = Context { risk_score: 69, ..calm_context() };
    assert_eq!(eval(&withdrawal_action("ETH", "1", "3000"), &ctx), Verdict::Allow);
}

#[test]
fn every_reason_is_reported_and_quorums_combine() {
    let inside = now().minus_seconds(10).to_string();
    let history = [recent(&inside, "key_mm1", "acct_main", "45000")];
    let ctx = Context {
        destination: DestinationStatus::NotAllowlisted,
        recent: &history,
        risk_score: 90,
        key_limit: None,
    };
    let v = eval(&withdrawal_action("ETH", "5", "15000"), &ctx);
    assert_eq!(
        reasons(&v),
        vec![
            Reason::AmountTier { tier: "large".into() },
            Reason::DestinationNotAllowlisted,
            Reason::VelocityExceeded { limit: "per-key hourly".into() },
            Reason::HighRisk { score: 90 },
        ]
    );
    assert_eq!(quorum_of(&v), quorum(&[("risk", 1), ("traders", 2)]));
}

#[test]
fn merge_takes_the_larger_min_and_the_smaller_veto() {
    let a = Quorum { rejections_to_veto: 2, ..quorum(&[("traders", 2), ("ops", 1)]) };
    let b = quorum(&[("traders", 1), ("risk", 1)]);
    let m = a.merge(&b);
    assert_eq!(m.groups, quorum(&[("ops", 1), ("risk", 1), ("traders", 2)]).groups);
    assert_eq!(m.rejections_to_veto, 1);
    assert_eq!(m.people_needed(), 4);
}

#[test]
fn invalid_policies_are_refused_with_a_reason() {
    let bad: Vec<(&str, Policy)> = vec![
        ("version", Policy { version: 0, ..policy() }),
        ("ttl zero", Policy { approval_ttl_seconds: 0, ..policy() }),
        ("ttl too long", Policy { approval_ttl_seconds: MAX_APPROVAL_TTL_SECONDS + 1, ..policy() }),
        ("empty quorum", Policy { admin_quorum: quorum(&[]), ..policy() }),
        ("zero min", Policy { admin_quorum: quorum(&[("admins", 0)]), ..policy() }),
        ("huge min", Policy { admin_quorum: quorum(&[("admins", MAX_GROUP_MIN + 1)]), ..policy() }),
        ("group twice", Policy { admin_quorum: quorum(&[("admins", 1), ("admins", 2)]), ..policy() }),
        (
            "no veto",
            Policy { admin_quorum: Quorum { rejections_to_veto: 0, ..quorum(&[("admins", 1)]) }, ..policy() },
        ),
        ("tier without threshold", {
            let mut p = policy();
            p.withdrawal_tiers[0].min_reference_value = None;
            p.withdrawal_tiers[0].min_asset_amount.clear();
            p
        }),
        ("velocity without max", {
            let mut p = policy();
            p.velocity[0].max_count = None;
            p.velocity[0].max_reference_value = None;
            p
        }),
        ("velocity zero window", {
            let mut p = policy();
            p.velocity[0].window_seconds = 0;
            p
        }),
        ("velocity window too long", {
            let mut p = policy();
            p.velocity[0].window_seconds = MAX_WINDOW_SECONDS + 1;
            p
        }),
        ("cool-off too long", {
            let mut p = policy();
            p.allowlist.cool_off_seconds = MAX_WINDOW_SECONDS + 1;
            p
        }),
        ("risk over 100", {
            let mut p = policy();
            p.high_risk.as_mut().unwrap().min_score = 101;
            p
        }),
        ("invisible character in a tier name", {
            let mut p = policy();
            p.withdrawal_tiers[0].name = "large\u{202E}".into();
            p
        }),
        ("deny destination with a space", {
            let mut p = policy();
            p.deny[0].destination = Some("0x00 dead".into());
            p
        }),
        ("empty tier name", {
            let mut p = policy();
            p.withdrawal_tiers[0].name.clear();
            p
        }),
    ];
    for (name, p) in bad {
        assert!(matches!(p.validate(), Err(Error::InvalidPolicy(_))), "{name}");
    }
}

#[test]
fn velocity_used_percent_reports_the_fullest_value_budget() {
    let inside = now().minus_seconds(60).to_string();
    let history = [recent(&inside, "key_mm1", "acct_main", "37000")];
    let Action::Withdrawal(w) = withdrawal_action("ETH", "1", "3000") else { unreachable!() };
    // per-key: 40,000 of 50,000 = 80%; per-account: 40,000 of 250,000 = 16%.
    assert_eq!(velocity_used_percent(&policy(), &api_key_initiator(), &w, &history, now()), Some(80));
    let by_person = Initiator::Approver { approver: id("alice") };
    assert_eq!(velocity_used_percent(&policy(), &by_person, &w, &history, now()), Some(16));
    let none = Policy { velocity: vec![], ..policy() };
    assert_eq!(velocity_used_percent(&none, &api_key_initiator(), &w, &history, now()), None);
}

/// The initiating key's own per-request limit is a policy input: above it the
/// withdrawal is denied before any other rule, at it the tiers decide as usual.
#[test]
fn the_api_keys_own_limit_denies_above_it() {
    let ctx = Context { key_limit: Some(amt("3000")), ..calm_context() };
    assert_eq!(eval(&withdrawal_action("ETH", "1", "3000"), &ctx), Verdict::Allow);
    let v = eval(&withdrawal_action("ETH", "1.0001", "3000.3"), &ctx);
    let Verdict::Deny { reason: DenyReason::Rule { message } } = &v else { panic!("{v:?}") };
    assert!(message.contains("per-request limit of 3000"), "{message}");
    assert_eq!(v.disposition(), Disposition::Deny);
    // Administrative operations carry no reference value: the limit does not apply.
    let a = Action::Unfreeze(Unfreeze { freeze_started: now(), reason: "done".into() });
    let by_admin = evaluate(&policy(), &Initiator::Approver { approver: id("alice") }, &a, &ctx, now());
    assert!(matches!(by_admin.disposition(), Disposition::Hold { .. }), "{by_admin:?}");
}
