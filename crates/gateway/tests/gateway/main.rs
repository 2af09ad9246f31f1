//! Gateway integration tests: real HTTP on port 0, SQLite and PostgreSQL.
//! Every story runs on both backends (see `both!`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

mod support;

/// Run async stories from a module on SQLite and on PostgreSQL as two tests each.
macro_rules! both {
    ($module:ident => $out:ident: $($name:ident),* $(,)?) => {
        mod $out {
            mod sqlite {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { crate::$module::$name(crate::support::Db::Sqlite).await })*
            }
            mod postgres {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { crate::$module::$name(crate::support::Db::Postgres).await })*
            }
        }
    };
}

mod approvals;
mod authority;
mod cli;
mod client;
mod layout;
mod review;
mod signing_doc;
mod stories;

both!(authority => authority_chain:
    settlement_verifies_from_the_genesis_and_refuses_what_the_tables_invent,
);

both!(client => approver_client:
    approvers_enroll_and_approve_through_the_client_over_pinned_https,
    a_gateway_with_another_key_is_refused_before_anything_is_sent,
    operations_altered_in_transit_are_refused_before_signing,
);

#[tokio::test]
async fn an_unreachable_gateway_is_a_clear_error() {
    client::an_unreachable_gateway_is_a_clear_error(support::Db::Sqlite).await;
}

both!(approvals => hardware_keys:
    two_hardware_key_approvals_release_a_large_withdrawal,
    approvals_bound_to_something_else_are_refused,
    every_relying_party_check_has_its_code,
    one_rejection_vetoes_and_enrollment_codes_are_single_use,
    new_keys_and_unfreezing_need_the_admin_quorum,
    cloned_keys_are_flagged_and_revocation_is_immediate,
    approvers_get_live_events_and_resume,
    live_events_reach_every_stream_and_follow_other_instances,
    any_approver_freezes_all_keys_with_a_touch,
    enrollment_is_refused_without_attestation_trust,
    bootstrap_codes_cannot_be_issued_in_a_burst,
    admin_changes_take_effect_only_after_the_admin_quorum,
);

both!(review => security_review:
    the_allowlist_matches_the_memo_too,
    a_duplicate_allowlist_entry_is_refused_or_recorded_stale,
    one_bad_operation_never_stops_the_sweep,
    a_veto_never_loses_a_race_with_a_release,
    binding_refusals_are_audited_only_over_a_real_signature,
    freezing_again_is_audited_and_cancels_a_pending_unfreeze,
    bad_labels_and_names_are_refused_before_any_write,
    the_intake_lock_holds_a_widened_window,
    attestation_refusals_have_their_codes,
    the_client_refuses_a_gateway_asking_for_another_relying_party,
    streams_end_with_the_session_and_people_see_only_their_operations,
    login_start_does_not_reveal_who_exists,
    a_login_flood_does_not_stop_a_freeze,
    a_decisions_reason_is_signed,
    the_client_shows_each_decisions_reason_with_its_signatures_verdict,
);

both!(stories => intake:
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
    a_full_intake_refuses_at_once_and_stores_nothing,
    concurrent_small_withdrawals_cannot_overspend_the_budget,
    repeated_refusals_are_audited_once_a_minute,
    slow_and_oversized_clients_are_cut_off,
);
