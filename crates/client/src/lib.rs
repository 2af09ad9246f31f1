//! # countersign-client
//!
//! The one typed client of the gateway, used by the CLI, the desktop app and the
//! tests, so none of them speaks HTTP by hand.
//!
//! | item | what it does |
//! |---|---|
//! | [`Client`] | every approver call: enroll, login, pending, challenge + sign a decision, freeze, registry |
//! | [`EnrollmentLink`] | `countersign://enroll?gateway=…&code=…&pin=sha256/…` |
//! | [`VerifiedOperation`] | an operation rebuilt from its canonical bytes; claims that differ are refused |
//! | [`Client::events`] | live Server-Sent Events, resumed with `Last-Event-ID` and backoff |
//! | [`Error`] | the gateway's error code, or a specific client error (pin mismatch, tampering, …) |
//!
//! **Transport.** HTTPS trusts exactly the pinned key from the enrollment link (no CA
//! is consulted; a different key fails before anything is sent). Plain HTTP is
//! allowed only to this machine. Every request has a timeout.

mod api;
mod authority;
mod error;
mod events;
mod link;
mod operation;
pub mod profile;
mod transport;

pub use api::{Client, DecisionChallenge, Enrolled, Info, RelyingParty, Session};
pub use authority::GenesisDraft;
pub use error::{Error, Result};
pub use events::{Event, Update};
pub use link::EnrollmentLink;
pub use operation::{CheckedDecision, VerifiedOperation};
pub use profile::Profile;
pub use transport::REQUEST_TIMEOUT;
