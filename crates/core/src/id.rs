//! Identifiers: short ASCII strings `[A-Za-z0-9._:-]{1,128}`.
//!
//! Restricting the alphabet keeps identifiers unambiguous on screen (no look-alike
//! Unicode, no whitespace) and makes their JSON encoding trivially canonical.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// Longest identifier accepted.
pub const MAX_ID_LEN: usize = 128;

fn validate(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok { Ok(()) } else { Err(Error::InvalidId(s.to_owned())) }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validate and wrap.
            ///
            /// # Errors
            /// [`Error::InvalidId`] when empty, too long or outside `[A-Za-z0-9._:-]`.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                validate(&s)?;
                Ok(Self(s))
            }

            /// The identifier as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// An operation's id; assigned by the gateway, never by the initiator.
    OperationId
);
id_type!(
    /// An exchange account (sub-account, wallet) whose funds move.
    AccountId
);
id_type!(
    /// An initiator's API key.
    ApiKeyId
);
id_type!(
    /// A person who may approve: one approver, however many hardware keys they hold.
    ApproverId
);
id_type!(
    /// An asset's ticker as the exchange lists it (`BTC`, `ETH`, `USDC`).
    AssetCode
);
id_type!(
    /// A settlement network (`bitcoin`, `ethereum`, `tron`, `solana`).
    NetworkId
);
id_type!(
    /// A named approver group that policy quorums refer to (e.g. `treasury`).
    GroupName
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ascii_ids() {
        for s in ["op_01", "acct:main", "k.1-2", &"a".repeat(MAX_ID_LEN)] {
            assert_eq!(OperationId::new(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn rejects_empty_long_and_exotic_ids() {
        for s in ["", " ", "a b", "ópera", "a/b", "a\"b", &"a".repeat(MAX_ID_LEN + 1)] {
            assert_eq!(ApiKeyId::new(s), Err(Error::InvalidId(s.to_owned())));
        }
        let json = serde_json::from_str::<ApproverId>("\"no spaces\"");
        assert!(json.unwrap_err().to_string().contains("invalid identifier"));
    }
}
