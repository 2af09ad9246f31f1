//! The worked example in docs/api-signing.md is what a client must compute.
