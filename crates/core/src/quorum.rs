//! Quorum tally: given verified decisions, is an operation pending, approved,
//! rejected or expired?
//!
//! Rules (see `docs/protocol.md`, "Quorum"):
//! - People count, not keys: several decisions by one person count once, and a
//!   person who both approved and rejected counts as rejecting (fail closed).
//! - Only people on the current [`Roster`] count: revoking someone removes their
//!   approval from every operation still pending.
//! - The person responsible for the operation (the initiating API key's owner, or
//!   the proposing admin) never counts as an approver; their rejection still vetoes.
//! - Each approver fills at most one place across all groups: a quorum of
//!   1-of-`ops` AND 1-of-`risk` needs two distinct people even if one person is in
//!   both groups. Places are assigned by maximum bipartite matching.
//! - At `expires_at` (inclusive) the operation is expired, whatever was decided.
//!   Otherwise `rejections_to_veto` distinct rejections reject it, and a full
//!   matching approves it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::binding::Decision;
use crate::id::{ApproverId, GroupName};
use crate::policy::Quorum;
use crate::timestamp::Timestamp;

/// The people who may currently decide, with their groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    members: BTreeMap<ApproverId, BTreeSet<GroupName>>,
}

impl Roster {
    /// An empty roster.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a person (or more groups for them).
    pub fn add(&mut self, person: ApproverId, groups: impl IntoIterator<Item = GroupName>) -> &mut Self {
        self.members.entry(person).or_default().extend(groups);
        self
    }

    /// Whether the person is on the roster.
    #[must_use]
    pub fn contains(&self, person: &ApproverId) -> bool {
        self.members.contains_key(person)
    }

    /// The groups a person belongs to.
    #[must_use]
    pub fn groups_of(&self, person: &ApproverId) -> Option<&BTreeSet<GroupName>> {
        self.members.get(person)
    }

    /// Everyone on the roster.
    pub fn people(&self) -> impl Iterator<Item = &ApproverId> {
        self.members.keys()
    }
}

/// One verified decision by one person (the gateway verified the signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedDecision {
    /// Who decided.
    pub approver: ApproverId,
    /// What they decided.
    pub decision: Decision,
}

/// How far one group requirement is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupProgress {
    pub group: GroupName,
    /// Places filled by approvals.
    pub approved: u32,
    /// Places needed.
    pub needed: u32,
}

/// The result of [`tally`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Tally {
    /// More approvals are needed.
    Pending {
        /// Per group.
        progress: Vec<GroupProgress>,
        /// False when the people who have not decided can no longer complete the
        /// quorum (admins should be told).
        reachable: bool,
    },
    /// The quorum is complete.
    Approved {
        /// The people whose approvals fill the quorum, sorted.
        approvers: Vec<ApproverId>,
    },
    /// Enough distinct people rejected it.
    Rejected {
        /// Who rejected, sorted.
        by: Vec<ApproverId>,
    },
    /// Its time ran out.
    Expired,
}

/// Decide where an operation stands. Pure: `now` is a parameter.
#[must_use]
pub fn tally(
    quorum: &Quorum,
    responsible: &ApproverId,
    roster: &Roster,
    decisions: &[CountedDecision],
    expires_at: Timestamp,
    now: Timestamp,
) -> Tally {
    if now >= expires_at {
        return Tally::Expired;
    }
    let counts = |p: &ApproverId| roster.contains(p) || p == responsible;
    let rejecters: BTreeSet<&ApproverId> = decisions
        .iter()
        .filter(|d| d.decision == Decision::Reject && counts(&d.approver))
        .map(|d| &d.approver)
        .collect();
    if rejecters.len() >= usize::try_from(quorum.rejections_to_veto).unwrap_or(usize::MAX) {
        return Tally::Rejected { by: rejecters.into_iter().cloned().collect() };
    }
    let approvers: BTreeSet<&ApproverId> = decisions
        .iter()
        .filter(|d| d.decision == Decision::Approve)
        .map(|d| &d.approver)
        .filter(|p| roster.contains(p) && *p != responsible && !rejecters.contains(p))
        .collect();

    let matched = match_places(quorum, roster, &approvers);
    let filled: usize = matched.values().map(Vec::len).sum();
    // A quorum that needs nobody is a broken policy: it never approves (fail closed).
    if quorum.people_needed() > 0 && u64::try_from(filled).unwrap_or(0) == quorum.people_needed() {
        let mut people: Vec<ApproverId> = matched.into_values().flatten().cloned().collect();
        people.sort();
        return Tally::Approved { approvers: people };
    }
    let progress = quorum
        .groups
        .iter()
        .map(|g| GroupProgress {
            group: g.group.clone(),
            approved: u32::try_from(matched.get(&g.group).map_or(0, Vec::len)).unwrap_or(u32::MAX),
            needed: g.min,
        })
        .collect();
    // Could everyone who has not rejected (and is allowed to count) still fill it?
    let possible: BTreeSet<&ApproverId> =
        roster.people().filter(|p| *p != responsible && !rejecters.contains(p)).collect();
    let best: usize = match_places(quorum, roster, &possible).values().map(Vec::len).sum();
    let reachable = quorum.people_needed() > 0 && u64::try_from(best).unwrap_or(0) == quorum.people_needed();
    Tally::Pending { progress, reachable }
}

/// Assign people to group places (each person at most one place) so that as many
/// places as possible are filled. Kuhn's augmenting-path algorithm; sizes are small
/// (a group's `min` is at most [`crate::policy::MAX_GROUP_MIN`]).
fn match_places<'a>(
    quorum: &'a Quorum,
    roster: &Roster,
    people: &BTreeSet<&'a ApproverId>,
) -> BTreeMap<GroupName, Vec<&'a ApproverId>> {
    // One entry per place; a group never needs more places than there are people.
    let places: Vec<&GroupName> = quorum
        .groups
        .iter()
        .flat_map(|g| {
            let n = usize::try_from(g.min).unwrap_or(usize::MAX).min(people.len());
            std::iter::repeat_n(&g.group, n)
        })
        .collect();
    let people: Vec<&ApproverId> = people.iter().copied().collect();
    let eligible = |person: usize, place: usize| {
        roster.groups_of(people[person]).is_some_and(|gs| gs.contains(places[place]))
    };
    let mut holder: Vec<Option<usize>> = vec![None; places.len()];

    fn augment(
        person: usize,
        places: usize,
        eligible: &dyn Fn(usize, usize) -> bool,
        holder: &mut [Option<usize>],
        visited: &mut [bool],
    ) -> bool {
        for place in 0..places {
            if visited[place] || !eligible(person, place) {
                continue;
            }
            visited[place] = true;
            let free = match holder[place] {
                None => true,
                Some(other) => augment(other, places, eligible, holder, visited),
            };
            if free {
                holder[place] = Some(person);
                return true;
            }
        }
        false
    }

    for person in 0..people.len() {
        let mut visited = vec![false; places.len()];
        augment(person, places.len(), &eligible, &mut holder, &mut visited);
    }
    let mut out: BTreeMap<GroupName, Vec<&ApproverId>> = BTreeMap::new();
    for (place, who) in holder.iter().enumerate() {
        if let Some(person) = who {
            out.entry(places[place].clone()).or_default().push(people[*person]);
        }
    }
    out
}
