//! Tauri's build step, with an app manifest: the UI may call exactly these commands
//! (each is then allowed by `capabilities/default.json`).
#![allow(clippy::print_stderr)]

const COMMANDS: &[&str] = &[
    "status",
    "enroll",
    "login",
    "lock",
    "pending",
    "prepare_decision",
    "sign_decision",
    "answer_pin",
    "answer_last_retry",
    "cancel_ceremony",
    "answer_choice",
    "history",
    "settings",
    "admin_overview",
    "admin_invite",
    "admin_revoke_api_key",
    "policy",
    "admin_propose",
    "freeze",
];

fn main() {
    let manifest = tauri_build::AppManifest::new().commands(COMMANDS);
    if let Err(e) = tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest)) {
        eprintln!("tauri build step: {e:#}");
        std::process::exit(1);
    }
}
