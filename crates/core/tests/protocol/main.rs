//! Protocol tests for `countersign-core`: one test binary, a module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

mod authority;
mod binding;
mod certificate;
mod decode_errors;
mod policy;
mod properties;
mod quorum;
mod support;
mod vectors;
