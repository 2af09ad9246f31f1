//! Tally rules: people not keys, initiator excluded, one place per person, veto,
//! expiry at the instant, reachability.

use countersign_core::quorum::{CountedDecision, GroupProgress, Roster};
use countersign_core::{Decision, Tally, Timestamp, tally};

use crate::support::*;

fn roster() -> Roster {
    let mut r = Roster::new();
    r.add(id("alice"), [id("traders")])
        .add(id("bob"), [id("traders")]) // owns the initiating API key
        .add(id("carol"), [id("traders")])
        .add(id("dave"), [id("traders"), id("risk")])
        .add(id("erin"), [id("risk")]);
    r
}

fn approve(who: &str) -> CountedDecision {
    CountedDecision { approver: id(who), decision: Decision::Approve }
}

fn reject(who: &str) -> CountedDecision {
    CountedDecision { approver: id(who), decision: Decision::Reject }
}

fn expires() -> Timestamp {
    now().plus_seconds(3600)
}

fn run(groups: &[(&str, u32)], decisions: &[CountedDecision]) -> Tally {
    tally(&quorum(groups), &id("bob"), &roster(), decisions, expires(), now())
}

fn people(names: &[&str]) -> Vec<countersign_core::id::ApproverId> {
    names.iter().map(|n| id(n)).collect()
}

#[test]
fn two_distinct_approvers_complete_two_of_n() {
    assert_eq!(
        run(&[("traders", 2)], &[approve("alice"), approve("carol")]),
        Tally::Approved { approvers: people(&["alice", "carol"]) }
    );
}

#[test]
fn one_person_with_two_keys_counts_once() {
    // Two verified decisions by alice (one per hardware key) are one person.
    let t = run(&[("traders", 2)], &[approve("alice"), approve("alice")]);
    assert_eq!(
        t,
        Tally::Pending {
            progress: vec![GroupProgress { group: id("traders"), approved: 1, needed: 2 }],
            reachable: true
        }
    );
}

#[test]
fn the_initiators_owner_never_counts() {
    let t = run(&[("traders", 2)], &[approve("alice"), approve("bob")]);
    assert!(matches!(t, Tally::Pending { .. }), "{t:?}");
    // ...but their rejection still vetoes (stopping is always safe).
    assert_eq!(run(&[("traders", 2)], &[reject("bob")]), Tally::Rejected { by: people(&["bob"]) });
}

#[test]
fn a_rejection_after_m_minus_one_approvals_vetoes() {
    let t = run(&[("traders", 3)], &[approve("alice"), approve("carol"), reject("dave")]);
    assert_eq!(t, Tally::Rejected { by: people(&["dave"]) });
}

#[test]
fn a_rejection_vetoes_even_after_the_quorum_is_complete_in_the_same_tally() {
    let t = run(&[("traders", 2)], &[approve("alice"), approve("carol"), reject("dave")]);
    assert_eq!(t, Tally::Rejected { by: people(&["dave"]) });
}

#[test]
fn veto_threshold_can_be_raised() {
    let mut q = quorum(&[("traders", 2)]);
    q.rejections_to_veto = 2;
    let t = tally(
        &q,
        &id("bob"),
        &roster(),
        &[reject("dave"), approve("alice"), approve("carol")],
        expires(),
        now(),
    );
    assert_eq!(t, Tally::Approved { approvers: people(&["alice", "carol"]) });
    let t =
        tally(&q, &id("bob"), &roster(), &[reject("dave"), reject("dave"), reject("erin")], expires(), now());
    assert_eq!(t, Tally::Rejected { by: people(&["dave", "erin"]) });
}

#[test]
fn a_person_who_approved_and_rejected_counts_as_rejecting() {
    let mut q = quorum(&[("traders", 2)]);
    q.rejections_to_veto = 2;
    let t = tally(
        &q,
        &id("bob"),
        &roster(),
        &[approve("alice"), reject("alice"), approve("carol")],
        expires(),
        now(),
    );
    assert!(matches!(t, Tally::Pending { .. }), "{t:?}");
}

#[test]
fn expiry_is_inclusive_of_the_instant() {
    let decisions = [approve("alice"), approve("carol")];
    let q = quorum(&[("traders", 2)]);
    assert_eq!(tally(&q, &id("bob"), &roster(), &decisions, now(), now()), Tally::Expired);
    assert!(matches!(
        tally(&q, &id("bob"), &roster(), &decisions, now().plus_seconds(1), now()),
        Tally::Approved { .. }
    ));
}

#[test]
fn groups_are_anded_and_one_person_fills_one_place() {
    // dave is in both groups; alone he cannot satisfy 1 trader AND 1 risk.
    let groups = [("traders", 1), ("risk", 1)];
    let t = run(&groups, &[approve("dave")]);
    assert!(matches!(t, Tally::Pending { .. }), "{t:?}");
    // With erin (risk only), dave moves to the traders place: matching, not greedy.
    assert_eq!(
        run(&groups, &[approve("dave"), approve("erin")]),
        Tally::Approved { approvers: people(&["dave", "erin"]) }
    );
    // Two traders and no risk officer is not enough.
    assert!(matches!(run(&groups, &[approve("alice"), approve("carol")]), Tally::Pending { .. }));
}

#[test]
fn revoked_people_do_not_count() {
    let mut r = roster();
    r = {
        let mut fresh = Roster::new();
        for p in r.people().filter(|p| p.as_str() != "carol") {
            fresh.add(p.clone(), r.groups_of(p).unwrap().iter().cloned());
        }
        fresh
    };
    let t = tally(
        &quorum(&[("traders", 2)]),
        &id("bob"),
        &r,
        &[approve("alice"), approve("carol")],
        expires(),
        now(),
    );
    assert!(matches!(t, Tally::Pending { .. }), "{t:?}");
    // An outsider's decisions count for nothing, not even a veto.
    let t = tally(&quorum(&[("traders", 2)]), &id("bob"), &r, &[reject("mallory")], expires(), now());
    assert!(matches!(t, Tally::Pending { .. }), "{t:?}");
}

#[test]
fn unreachable_quorum_is_reported() {
    // Traders who can count: alice, carol, dave (bob owns the key). Needs 3; carol rejects
    // with a veto threshold of 2: still pending, but only alice and dave are left.
    let mut q = quorum(&[("traders", 3)]);
    q.rejections_to_veto = 2;
    let t = tally(&q, &id("bob"), &roster(), &[reject("carol")], expires(), now());
    assert_eq!(
        t,
        Tally::Pending {
            progress: vec![GroupProgress { group: id("traders"), approved: 0, needed: 3 }],
            reachable: false
        }
    );
    let t = tally(&quorum(&[("traders", 3)]), &id("bob"), &roster(), &[], expires(), now());
    assert!(matches!(t, Tally::Pending { reachable: true, .. }), "{t:?}");
}

#[test]
fn a_quorum_that_needs_nobody_never_approves() {
    let q = countersign_core::policy::Quorum { groups: vec![], rejections_to_veto: 1 };
    let t = tally(&q, &id("bob"), &roster(), &[], expires(), now());
    assert_eq!(t, Tally::Pending { progress: vec![], reachable: false });
}
