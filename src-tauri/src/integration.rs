//! Desktop integration: one instance per user, a tray icon with the pending count,
//! and a native notification when an operation starts waiting.

use std::io::{Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use tauri::menu::{Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager};

const TRAY: &str = "countersign";

/// Where the running instance listens: `$XDG_RUNTIME_DIR` (per user, 0700) or the
/// profile directory.
#[must_use]
pub fn socket_path(profile_dir: &Path) -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| profile_dir.to_path_buf())
        .join("countersign-desktop.sock")
}

/// The outcome of claiming the single-instance socket.
#[derive(Debug)]
pub enum Instance {
    /// This is the first instance: the listener hears later starts.
    First(UnixListener),
    /// Another instance runs; it was asked to show its window.
    AlreadyRunning,
}

/// Claim the socket, or wake the instance that holds it. A stale socket (its
/// process gone) is replaced.
///
/// # Errors
/// The socket cannot be created.
pub fn claim(path: &Path) -> std::io::Result<Instance> {
    if let Ok(mut other) = UnixStream::connect(path) {
        other.write_all(b"show\n")?;
        return Ok(Instance::AlreadyRunning);
    }
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    Ok(Instance::First(UnixListener::bind(path)?))
}

/// Show and focus the main window whenever a second start knocks.
pub fn listen(app: AppHandle, listener: UnixListener) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut buf = [0u8; 8];
            let _ = (&stream).read(&mut buf);
            show_main(&app);
        }
    });
}

fn show_main(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
    }
}

/// The tray icon: the pending count in its title and tooltip; Show and Quit.
///
/// # Errors
/// Tauri could not create the icon or its menu.
pub fn tray(app: &AppHandle) -> tauri::Result<()> {
    let show = MenuItem::with_id(app, "show", "Show Countersign", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&show, &quit])?;
    let mut builder = TrayIconBuilder::with_id(TRAY).menu(&menu).tooltip("Countersign: nothing waiting");
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder
        .on_menu_event(|app, event| match event.id.as_ref() {
            "show" => show_main(app),
            "quit" => app.exit(0),
            _ => {}
        })
        .build(app)?;
    Ok(())
}

/// Show `count` waiting operations in the tray and the window title.
pub fn set_pending_count(app: &AppHandle, count: usize) {
    let text = match count {
        0 => "Countersign: nothing waiting".to_owned(),
        1 => "Countersign: 1 operation waiting for approval".to_owned(),
        n => format!("Countersign: {n} operations waiting for approval"),
    };
    if let Some(tray) = app.tray_by_id(TRAY) {
        let _ = tray.set_tooltip(Some(&text));
        let _ = tray.set_title((count > 0).then(|| count.to_string()).as_deref());
    }
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.set_title(&if count > 0 { format!("({count}) Countersign") } else { "Countersign".into() });
    }
}

/// A native notification (freedesktop, over D-Bus), sent from its own thread so a
/// slow or absent notification service never holds up the caller (the live event
/// loop). Best effort: without a service the notification is lost, never the
/// operation.
pub fn notify(summary: &'static str, body: &'static str) {
    std::thread::spawn(move || {
        let shown = notify_rust::Notification::new()
            .appname("Countersign")
            .summary(summary)
            .body(body)
            .timeout(notify_rust::Timeout::Milliseconds(10_000))
            .show();
        if let Err(e) = shown {
            tracing::debug!(error = %e, "no notification service");
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_second_start_wakes_the_first_and_a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("countersign-desktop.sock");
        let Instance::First(listener) = claim(&path).unwrap() else { panic!("first claim") };
        let waiter = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).unwrap();
            buf
        });
        assert!(matches!(claim(&path).unwrap(), Instance::AlreadyRunning));
        assert_eq!(waiter.join().unwrap(), "show\n");
        // The first instance is gone (listener dropped): the next start takes over.
        assert!(matches!(claim(&path).unwrap(), Instance::First(_)));
    }
}
