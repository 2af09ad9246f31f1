//! The approver's profile: which gateway, its pinned TLS key, who you are. Nothing
//! secret; shared by the CLI and the desktop app.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What `enroll` learns and later commands use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// The gateway's base URL.
    pub gateway: String,
    /// The gateway's pinned TLS key (`sha256/…`); absent only for loopback HTTP.
    pub pin: Option<String>,
    /// Who you are at this gateway.
    pub approver: String,
    /// The WebAuthn relying party pinned at enrollment: a gateway that later asks
    /// for signatures for another is refused. Absent in profiles written before it
    /// was pinned (then the gateway's is used; enroll again to pin it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relying_party: Option<crate::RelyingParty>,
    /// The authority chain's genesis hash (hex) this person compared: pinned when
    /// they sign it, or with `countersign chain --genesis <hash>`. Absent: the chain
    /// is verified from the genesis the gateway serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis: Option<String>,
}

impl Profile {
    /// A client for this profile's gateway, pinned to its TLS key and relying party.
    ///
    /// # Errors
    /// As [`crate::Client::new`].
    pub fn client(&self) -> crate::Result<crate::Client> {
        let mut client = crate::Client::new(&self.gateway, self.pin.as_deref())?;
        if let Some(rp) = &self.relying_party {
            client = client.with_relying_party(rp.clone());
        }
        if let Some(genesis) = &self.genesis {
            client = client.with_genesis(genesis.clone());
        }
        Ok(client)
    }
}

/// The profile directory: `--profile-dir`, else `$COUNTERSIGN_HOME`, else
/// `$XDG_CONFIG_HOME/countersign`, else `~/.config/countersign`.
#[must_use]
pub fn dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_owned();
    }
    if let Some(p) = std::env::var_os("COUNTERSIGN_HOME") {
        return PathBuf::from(p);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    config.join("countersign")
}

impl Profile {
    /// Read `profile.json`.
    ///
    /// # Errors
    /// Not enrolled yet, or an unreadable file.
    pub fn load(dir: &Path) -> Result<Profile, String> {
        let path = dir.join("profile.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e} (run `countersign enroll <link>` first)", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Write `profile.json`.
    ///
    /// # Errors
    /// The directory cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("profile.json"), json).map_err(|e| format!("{}: {e}", dir.display()))
    }
}
