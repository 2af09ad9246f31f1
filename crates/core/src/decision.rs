//! What an approver decides: a leaf of the vocabulary, used by bindings, errors,
//! the tally and the rules.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What an approver decides about an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Count me towards the quorum.
    Approve,
    /// Refuse it (one rejection vetoes by default).
    Reject,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        })
    }
}
