//! Gateway integration tests: real HTTP on port 0, SQLite and PostgreSQL.
//! Every story runs on both backends (see `both!`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

mod support;

/// Run one async story on SQLite and on PostgreSQL as two tests.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::stories::$name(super::support::Db::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::stories::$name(super::support::Db::Postgres).await })*
        }
    };
}

mod cli;
mod signing_doc;
mod stories;

both!(
    small_withdrawal_is_released_once_with_a_signed_release,
    large_withdrawal_is_held_with_quorum_expiry_and_fingerprint,
    sanctioned_destination_is_denied_and_stored,
    idempotency_replays_and_conflicts,
    concurrent_duplicates_create_one_operation,
    every_bad_input_has_its_code_and_changes_nothing,
    every_auth_failure_has_its_code_and_known_keys_are_audited,
    hmac_keys_work_and_secrets_are_not_stored,
    pending_operations_expire_and_are_never_released,
    initiators_read_only_their_own_operations_page_by_page,
    allowlist_cool_off_holds_new_destinations,
    the_stolen_api_keys_incident_is_contained,
    audit_chain_exports_and_verifies_and_names_tampering,
    health_metrics_and_openapi_match_the_routes,
    settlement_webhook_is_retried_until_acknowledged,
    unfreezing_is_an_operation_that_needs_the_admin_quorum,
);
