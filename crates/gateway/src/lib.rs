//! # countersign-gateway
//!
//! The exchange-side service that stops a stolen API key from moving large sums:
//! it authenticates API-key requests, judges each withdrawal by policy, holds what
//! needs people, keeps the audit chain and releases exactly once to settlement.
//!
//! | module | what it holds |
//! |---|---|
//! | [`routes`] | the HTTP API: the route table, a file per resource; handlers are adapters |
//! | [`state`] | the application state and how it is built from the configuration |
//! | [`auth`] | API-key request signatures (Ed25519, HMAC-SHA256), nonces, allowlists |
//! | [`intake`] | `POST /v1/withdrawals`: validation, risk, policy, storage |
//! | [`approvers`] | a file per hardware-key ceremony: enroll, login, decision, freeze, proposals |
//! | [`sweep`] | the background sweep: expiry, settlement, nonces, checkpoints |
//! | [`release`] | the signed document settlement receives |
//! | [`store`] | the only SQL: SQLite / PostgreSQL, the audit chain, exactly-once transitions |
//! | [`invariants`] | the independent check of every promise (`countersign-gateway check`) |
//! | [`decoy`] | decoy login challenges: `login/start` does not tell who exists |
//! | [`rate`] | rate limits for logins and enrollments started without a session |
//! | [`race`] | test hooks that widen the intake and settlement windows (zero otherwise) |
//! | [`assets`] | listed assets and address checks per network |
//! | [`http`] | connection, header and body limits (slowloris, floods) |
//! | [`config`], [`keys`], [`clock`], [`metrics`], [`error`] | the edges |

pub mod approvers;
pub mod assets;
pub mod auth;
pub mod authority;
pub mod clock;
pub mod config;
pub mod decoy;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod events;
pub mod http;
pub mod intake;
pub mod invariants;
pub mod keys;
pub mod metrics;
pub mod race;
pub mod rate;
pub mod release;
pub mod routes;
pub mod state;
pub mod store;
pub mod sweep;
pub mod tls;

pub use routes::{OPENAPI, Peer, router, serve};
pub use state::{AppState, authenticator_timeout_ms};
