//! The kinds of operation, a leaf of the vocabulary (policy rules name them
//! without depending on the operations themselves).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of an [`Action`], for policy rules, filters and display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum OperationKind {
    Withdrawal,
    AllowlistAdd,
    PolicyUpdate,
    ApproverEnroll,
    ApproverRevoke,
    ApiKeyCreate,
    Unfreeze,
}

impl OperationKind {
    /// The snake_case name used on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Withdrawal => "withdrawal",
            Self::AllowlistAdd => "allowlist_add",
            Self::PolicyUpdate => "policy_update",
            Self::ApproverEnroll => "approver_enroll",
            Self::ApproverRevoke => "approver_revoke",
            Self::ApiKeyCreate => "api_key_create",
            Self::Unfreeze => "unfreeze",
        }
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
