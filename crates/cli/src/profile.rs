//! Where the CLI keeps the session token: the OS keyring (Secret Service). Never a
//! plaintext token unless you ask for `--session-store file` (headless servers),
//! which warns every time. The profile itself is `countersign_client::Profile`.

use std::path::Path;

use countersign_client::{Profile, Session};

/// Where the session token lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SessionStore {
    /// The OS keyring (Secret Service on Linux). A clear error where there is none.
    Keyring,
    /// A file (mode 0600) in the profile directory, for headless servers: the token
    /// is stored in plain text, so a warning is printed each time it is used.
    File,
}

const SERVICE: &str = "countersign";

fn account(p: &Profile) -> String {
    format!("{}@{}", p.approver, p.gateway)
}

fn keyring_entry(p: &Profile) -> Result<keyring::Entry, String> {
    keyring::Entry::new(SERVICE, &account(p)).map_err(keyring_error)
}

fn keyring_error(e: keyring::Error) -> String {
    format!(
        "OS keyring: {e}. On a headless server use --session-store file (the token is then kept \
         in plain text in the profile directory)"
    )
}

fn warn_file(path: &Path) {
    eprintln!(
        "warning: the session token is kept in plain text in {} (--session-store file)",
        path.display()
    );
}

impl SessionStore {
    /// Keep the session token.
    ///
    /// # Errors
    /// No keyring, or an unwritable file.
    pub fn save(self, dir: &Path, p: &Profile, s: &Session) -> Result<(), String> {
        match self {
            SessionStore::Keyring => keyring_entry(p)?.set_password(s.expose()).map_err(keyring_error),
            SessionStore::File => {
                let path = dir.join("session");
                warn_file(&path);
                let _ = std::fs::remove_file(&path);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut f = options.open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                std::io::Write::write_all(&mut f, s.expose().as_bytes()).map_err(|e| e.to_string())
            }
        }
    }

    /// The stored session token.
    ///
    /// # Errors
    /// Not logged in, or no keyring.
    pub fn load(self, dir: &Path, p: &Profile) -> Result<Session, String> {
        let token = match self {
            SessionStore::Keyring => match keyring_entry(p)?.get_password() {
                Ok(t) => t,
                Err(keyring::Error::NoEntry) => return Err("not logged in: run `countersign login`".into()),
                Err(e) => return Err(keyring_error(e)),
            },
            SessionStore::File => {
                let path = dir.join("session");
                warn_file(&path);
                std::fs::read_to_string(&path)
                    .map_err(|_| "not logged in: run `countersign login --session-store file`".to_owned())?
            }
        };
        Ok(Session::new(token.trim().to_owned()))
    }
}
