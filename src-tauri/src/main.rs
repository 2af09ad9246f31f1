//! Countersign Desktop: a thin Tauri shell. Each command is one line onto
//! [`desktop::Desktop`], which uses `countersign-client` and `countersign-keys`.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]
#![allow(clippy::print_stderr)]

#[cfg(feature = "demo")]
mod demo;
mod desktop;
mod integration;
mod prompt;

use countersign_client::VerifiedOperation;
use countersign_core::Decision;
use desktop::{AppError, Desktop, KeySource, Status};
use serde_json::Value;
use tauri::{Manager, State};

#[tauri::command]
async fn status(d: State<'_, Desktop>) -> Result<Status, AppError> {
    Ok(d.status().await)
}

#[tauri::command]
async fn login(d: State<'_, Desktop>) -> Result<Status, AppError> {
    d.login().await
}

#[tauri::command]
async fn enroll(d: State<'_, Desktop>, link: String, label: String) -> Result<Status, AppError> {
    d.enroll(&link, &label).await
}

#[tauri::command]
async fn lock(d: State<'_, Desktop>) -> Result<Status, AppError> {
    Ok(d.lock().await)
}

#[tauri::command]
async fn pending(d: State<'_, Desktop>) -> Result<Vec<VerifiedOperation>, AppError> {
    d.pending().await
}

#[tauri::command]
async fn prepare_decision(
    d: State<'_, Desktop>,
    id: String,
    decision: Decision,
) -> Result<VerifiedOperation, AppError> {
    d.prepare(&id, decision).await
}

#[tauri::command]
async fn sign_decision(d: State<'_, Desktop>, id: String, reason: Option<String>) -> Result<Value, AppError> {
    d.sign(&id, reason).await
}

#[tauri::command]
fn answer_pin(d: State<'_, Desktop>, pin: Option<String>) {
    d.answer_pin(pin);
}

#[tauri::command]
fn answer_last_retry(d: State<'_, Desktop>, confirm: bool) {
    d.answer_last_retry(confirm);
}

#[tauri::command]
fn cancel_ceremony(d: State<'_, Desktop>) {
    d.cancel();
}

#[tauri::command]
fn answer_choice(d: State<'_, Desktop>, index: Option<usize>) {
    d.answer_choice(index);
}

#[tauri::command]
async fn history(d: State<'_, Desktop>) -> Result<Vec<VerifiedOperation>, AppError> {
    d.history().await
}

#[tauri::command]
async fn settings(d: State<'_, Desktop>) -> Result<Value, AppError> {
    Ok(d.settings().await)
}

#[tauri::command]
async fn admin_overview(d: State<'_, Desktop>) -> Result<Value, AppError> {
    d.admin_overview().await
}

#[tauri::command]
async fn admin_invite(
    d: State<'_, Desktop>,
    id: String,
    name: String,
    roles: Vec<String>,
    groups: Vec<String>,
) -> Result<String, AppError> {
    d.admin_invite(&id, &name, &roles, &groups).await
}

#[tauri::command]
async fn policy(d: State<'_, Desktop>) -> Result<Value, AppError> {
    d.policy().await
}

#[tauri::command]
async fn admin_propose(d: State<'_, Desktop>, action: Value) -> Result<VerifiedOperation, AppError> {
    d.admin_propose(action).await
}

#[tauri::command]
async fn admin_revoke_api_key(d: State<'_, Desktop>, id: String) -> Result<(), AppError> {
    d.admin_revoke_api_key(&id).await
}

#[tauri::command]
async fn freeze(d: State<'_, Desktop>, reason: String) -> Result<bool, AppError> {
    d.freeze(&reason).await
}

#[tauri::command]
async fn sign_genesis(d: State<'_, Desktop>, hash: String) -> Result<Value, AppError> {
    d.sign_genesis(&hash).await
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let demo = std::env::args().any(|a| a == "--demo");
    // One instance per user (a demo runs beside it): a second start shows the first.
    let listener = if demo {
        None
    } else {
        match integration::claim(&integration::socket_path(&countersign_client::profile::dir(None))) {
            Ok(integration::Instance::AlreadyRunning) => {
                eprintln!("Countersign Desktop is already running: its window was brought to the front.");
                return;
            }
            Ok(integration::Instance::First(l)) => Some(l),
            Err(e) => {
                eprintln!("countersign-desktop: cannot claim the single-instance socket: {e}");
                std::process::exit(1);
            }
        }
    };
    let result = tauri::Builder::default()
        .plugin(tauri_plugin_window_state::Builder::default().build())
        .setup(move |app| {
            let handle = app.handle().clone();
            if let Some(l) = listener {
                integration::listen(handle.clone(), l);
            }
            // No tray host (a bare X server, some desktops): the app works without it.
            if let Err(e) = integration::tray(&handle) {
                tracing::warn!(error = %e, "no tray icon");
            }
            let desktop = if demo {
                #[cfg(feature = "demo")]
                {
                    let setup = tauri::async_runtime::block_on(demo::start())?;
                    Desktop::new(
                        handle,
                        Some(setup.profile),
                        None,
                        KeySource::Soft(setup.key),
                        Some(setup.pin),
                    )
                }
                #[cfg(not(feature = "demo"))]
                {
                    return Err("this build has no demo mode (cargo feature `demo`)".into());
                }
            } else {
                let dir = countersign_client::profile::dir(None);
                let profile = countersign_client::Profile::load(&dir).ok();
                Desktop::new(handle, profile, Some(dir), KeySource::Usb, None)
            };
            let desktop = desktop.map_err(|e| format!("{e:?}"))?;
            app.manage(desktop);
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            status,
            enroll,
            login,
            lock,
            pending,
            prepare_decision,
            sign_decision,
            answer_pin,
            answer_last_retry,
            cancel_ceremony,
            answer_choice,
            history,
            settings,
            admin_overview,
            admin_invite,
            admin_revoke_api_key,
            policy,
            admin_propose,
            freeze,
            sign_genesis
        ])
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("countersign-desktop: {e}");
        std::process::exit(1);
    }
}
