//! Configuration: a TOML file, then environment overrides.
//!
//! ```toml
//! listen = "127.0.0.1:8440"
//! database = "sqlite://data/countersign.db"   # or postgres://user@host/db
//! data_dir = "data"
//!
//! [[assets]]
//! code = "ETH"
//! network = "ethereum"
//! decimals = 18
//! price = "3012.47"            # in the policy's reference currency
//! address_format = "evm"
//!
//! [policy]                      # the initial policy (version 1); later versions
//! ...                           # are PolicyUpdate operations
//! ```
//!
//! Environment: `COUNTERSIGN_LISTEN`, `COUNTERSIGN_DATABASE`, `COUNTERSIGN_DATA_DIR`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use countersign_core::Amount;
use countersign_core::id::{AssetCode, NetworkId};
use countersign_core::policy::Policy;
use serde::Deserialize;

use crate::assets::{AddressFormat, MemoRule};

/// A database URL. `Debug` and `Display` show only the scheme, never credentials.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wrap a URL.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The URL itself, for the driver only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for `postgres://` and `postgresql://`.
    #[must_use]
    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.0.split("://").next().unwrap_or("?");
        write!(f, "{scheme}://<redacted>")
    }
}

/// One listed asset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetConfig {
    /// Ticker.
    pub code: AssetCode,
    /// Network it is withdrawn on.
    pub network: NetworkId,
    /// Most fractional digits an amount may have.
    pub decimals: u32,
    /// Price of one unit in the policy's reference currency (static; a price feed
    /// plugs in behind the same interface).
    pub price: Amount,
    /// How addresses on this network are checked.
    pub address_format: AddressFormat,
    /// Whether a memo / destination tag is required, optional or refused.
    #[serde(default)]
    pub memo: MemoRule,
}

/// WebAuthn relying-party settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebauthnConfig {
    /// Relying-party id: a domain the exchange controls. Changing it later invalidates
    /// every enrolled key.
    pub rp_id: String,
    /// The origin approvers' clients put in clientDataJSON, e.g. `https://approvals.example`.
    pub origin: String,
    /// Built-in attestation trust: `yubikey` (Yubico's FIDO attestation root, any
    /// YubiKey model); `development` (the software authenticator: demo and tests
    /// only). Combined with `attestation_cas`.
    #[serde(default)]
    pub attestation_presets: Vec<AttestationPreset>,
    /// Further attestation CAs whose keys may enroll, each restricted to AAGUIDs.
    /// Nothing configured: enrollment is refused (fail closed).
    #[serde(default)]
    pub attestation_cas: Vec<AttestationCaConfig>,
    /// How long a login lasts.
    #[serde(default = "default_session_ttl")]
    pub session_ttl_seconds: u64,
    /// How long a challenge may be answered.
    #[serde(default = "default_challenge_ttl")]
    pub challenge_ttl_seconds: u64,
    /// How long an enrollment code is valid.
    #[serde(default = "default_code_ttl")]
    pub enrollment_code_ttl_seconds: u64,
}

impl Default for WebauthnConfig {
    fn default() -> Self {
        WebauthnConfig {
            rp_id: "localhost".into(),
            origin: "https://localhost".into(),
            attestation_presets: vec![],
            attestation_cas: vec![],
            session_ttl_seconds: default_session_ttl(),
            challenge_ttl_seconds: default_challenge_ttl(),
            enrollment_code_ttl_seconds: default_code_ttl(),
        }
    }
}

/// A built-in set of trusted attestation roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttestationPreset {
    /// YubiKeys, any model: Yubico's U2F root (serial 457200631), FIDO root (serial
    /// 450203556) and "Yubico Attestation Root 1" (firmware 5.7 and later).
    Yubikey,
    /// FIDO2 keys of the vendors listed in `attestation/README.md` (Yubico, Google
    /// Titan, Feitian, SoloKeys, Nitrokey FIDO2, Token2), any model under their roots.
    Permissive,
    /// **Development only: trusts the SOFTWARE authenticator `countersign-softkey`**,
    /// whose attestation CA key is public (anyone can mint keys under it). For the
    /// demo and tests; the gateway logs a warning at startup and marks every such
    /// credential as software.
    Development,
}

/// One trusted attestation CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationCaConfig {
    /// PEM file of the CA certificate.
    pub pem_file: PathBuf,
    /// Authenticator models (AAGUIDs) accepted under it.
    pub aaguids: Vec<String>,
    /// What it is ("YubiKey 5 series").
    #[serde(default)]
    pub description: String,
}

fn default_session_ttl() -> u64 {
    900
}
fn default_challenge_ttl() -> u64 {
    120
}
fn default_code_ttl() -> u64 {
    900
}

/// Settlement delivery.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SettlementConfig {
    /// POST each release document here (https:// recommended); absent: ledger only.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Per-attempt timeout, seconds.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_seconds: u64,
}

fn default_webhook_timeout() -> u64 {
    10
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`. Defaults to `<data_dir>/countersign.db`.
    #[serde(default)]
    pub database: Option<DatabaseUrl>,
    /// Where the SQLite database and the key file live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The gateway key file; defaults to `<data_dir>/gateway-keys`.
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How far a request's timestamp may be from the gateway's clock, in seconds.
    #[serde(default = "default_window")]
    pub signature_window_seconds: i64,
    /// How often pending operations are checked for expiry, in seconds.
    #[serde(default = "default_sweep")]
    pub sweep_interval_seconds: u64,
    /// Most operations one API key may have pending at once; beyond, requests that
    /// would need approval are refused (push-fatigue protection).
    #[serde(default = "default_max_pending")]
    pub max_pending_per_key: i64,
    /// Most live event streams open at once, in all (each costs a task and a
    /// connection; the database is read once per commit for all of them); beyond,
    /// `503 events.too_many_streams`. One person may hold at most
    /// [`crate::events::STREAMS_PER_PERSON`].
    #[serde(default = "default_max_event_streams")]
    pub max_event_streams: usize,
    /// Withdrawals taken in at once (admission control); beyond, an immediate
    /// `503 intake.busy` rather than a queue that grows until the database's
    /// acquire timeout. The bots retry with the same idempotency key.
    #[serde(default = "default_max_intake_in_flight")]
    pub max_intake_in_flight: usize,
    /// Logins and enrollments one source address may start per minute (per
    /// instance); beyond, `429 ceremony.rate_limited`.
    #[serde(default = "default_ceremonies_per_source")]
    pub ceremonies_per_minute_per_source: u32,
    /// Logins one person may have started per minute, from anywhere (per instance).
    #[serde(default = "default_ceremonies_per_person")]
    pub ceremonies_per_minute_per_person: u32,
    /// Ceremonies (challenges not yet answered or expired) stored at once, in all;
    /// beyond, new logins and enrollments get `503 ceremony.busy`. Decisions and
    /// freezes by logged-in people are never refused for this.
    #[serde(default = "default_max_outstanding_ceremonies")]
    pub max_outstanding_ceremonies: i64,
    /// Connections served at once; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (slowloris).
    #[serde(default = "default_read_timeout")]
    pub header_read_timeout_seconds: u64,
    /// Seconds a client has to send a request's body, after its headers.
    #[serde(default = "default_read_timeout")]
    pub body_read_timeout_seconds: u64,
    /// Sign an audit checkpoint after this many new entries.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Listed assets.
    #[serde(default)]
    pub assets: Vec<AssetConfig>,
    /// Where released operations go besides the built-in ledger.
    #[serde(default)]
    pub settlement: SettlementConfig,
    /// Hardware-key (WebAuthn) settings for approvers.
    #[serde(default)]
    pub webauthn: WebauthnConfig,
    /// HTTPS for approvers' clients (see [`crate::tls`]). Absent: plain HTTP, for a
    /// gateway behind a TLS-terminating proxy or on loopback only.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// The URL clients use to reach this gateway, put in enrollment links; defaults
    /// to `https://` (or `http://` without `[tls]`) + `listen`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The genesis hash (hex) of the authority chain this gateway pins: with it set,
    /// a stored genesis that hashes otherwise is refused (fail closed). Without it the
    /// stored genesis is used, and only settlement's pin protects against its
    /// replacement.
    #[serde(default)]
    pub genesis: Option<String>,
    /// The initial policy, stored as version 1 on first start.
    pub policy: Policy,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8440))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_max_body() -> usize {
    64 * 1024
}
fn default_window() -> i64 {
    30
}
fn default_sweep() -> u64 {
    5
}
fn default_max_pending() -> i64 {
    20
}
fn default_max_intake_in_flight() -> usize {
    32
}
fn default_ceremonies_per_source() -> u32 {
    60
}
fn default_ceremonies_per_person() -> u32 {
    20
}
fn default_max_outstanding_ceremonies() -> i64 {
    10_000
}
fn default_max_connections() -> usize {
    4096
}
fn default_read_timeout() -> u64 {
    10
}
fn default_max_event_streams() -> usize {
    1000
}
fn default_checkpoint_every() -> u64 {
    100
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Parse TOML text and check it.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the problem.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: origin.to_owned(), message };
        let config: Config = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        config.policy.validate().map_err(|e| invalid(format!("[policy]: {e}")))?;
        if config.policy.version != 1 {
            return Err(invalid("[policy]: the initial policy must be version 1".into()));
        }
        if config.signature_window_seconds <= 0 || config.signature_window_seconds > 300 {
            return Err(invalid("signature_window_seconds must be 1..=300".into()));
        }
        if let Some(url) = &config.settlement.webhook_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid("settlement.webhook_url must be an http(s) URL".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &config.assets {
            if !seen.insert((a.code.clone(), a.network.clone())) {
                return Err(invalid(format!("asset {} on {} is listed twice", a.code, a.network)));
            }
            if a.decimals > 28 {
                return Err(invalid(format!("asset {}: decimals must be at most 28", a.code)));
            }
        }
        Ok(config)
    }

    /// Read a file, then apply environment overrides.
    ///
    /// # Errors
    /// [`ConfigError`] when the file is unreadable or invalid.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config = Self::from_toml(&text, path)?;
        config
            .apply_env(|name| std::env::var(name).ok())
            .map_err(|message| ConfigError::Invalid { path: PathBuf::from("environment"), message })?;
        Ok(config)
    }

    /// Apply `COUNTERSIGN_*` overrides from `lookup`.
    ///
    /// # Errors
    /// A message naming the variable that does not parse.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        if let Some(v) = lookup("COUNTERSIGN_LISTEN") {
            self.listen = v.parse().map_err(|_| format!("COUNTERSIGN_LISTEN: not an address: {v:?}"))?;
        }
        if let Some(v) = lookup("COUNTERSIGN_DATABASE") {
            self.database = Some(DatabaseUrl::new(v));
        }
        if let Some(v) = lookup("COUNTERSIGN_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        Ok(())
    }

    /// The database URL in effect.
    #[must_use]
    pub fn database_url(&self) -> DatabaseUrl {
        self.database.clone().unwrap_or_else(|| {
            DatabaseUrl::new(format!("sqlite://{}?mode=rwc", self.data_dir.join("countersign.db").display()))
        })
    }

    /// The key file in effect.
    #[must_use]
    pub fn keys_path(&self) -> PathBuf {
        self.keys_file.clone().unwrap_or_else(|| self.data_dir.join("gateway-keys"))
    }

    /// The listed asset on a network.
    #[must_use]
    pub fn asset(&self, code: &AssetCode, network: &NetworkId) -> Option<&AssetConfig> {
        self.assets.iter().find(|a| &a.code == code && &a.network == network)
    }

    /// A listed asset on `network`: its address format and memo rule are the
    /// network's (for destinations named without an asset, such as allowlist entries).
    #[must_use]
    pub fn asset_on(&self, network: &NetworkId) -> Option<&AssetConfig> {
        self.assets.iter().find(|a| &a.network == network)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_loads() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../countersign.example.toml"));
        let text = std::fs::read_to_string(path).unwrap();
        let config = Config::from_toml(&text, path).unwrap();
        assert_eq!(config.assets.len(), 4);
        assert_eq!(config.policy.withdrawal_tiers.len(), 2);
        assert!(config.policy.allowlist.enforced);
    }

    #[test]
    fn invalid_configuration_names_the_problem() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../countersign.example.toml"));
        let text = std::fs::read_to_string(path).unwrap();
        let err =
            Config::from_toml(&text.replace("approval_ttl_seconds = 3600", "approval_ttl_seconds = 0"), path);
        assert!(err.unwrap_err().to_string().contains("approval_ttl_seconds"));
        let err = Config::from_toml(&text.replace("version = 1", "version = 2"), path);
        assert!(err.unwrap_err().to_string().contains("version 1"));
        let err = Config::from_toml(&format!("surprise = true\n{text}"), path);
        assert!(err.unwrap_err().to_string().contains("surprise"));
    }

    #[test]
    fn environment_overrides_apply() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../countersign.example.toml"));
        let mut config = Config::from_toml(&std::fs::read_to_string(path).unwrap(), path).unwrap();
        config
            .apply_env(|k| match k {
                "COUNTERSIGN_LISTEN" => Some("127.0.0.1:9999".into()),
                "COUNTERSIGN_DATABASE" => Some("postgres://u:p@h/db".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert!(config.database_url().is_postgres());
        assert!(config.apply_env(|_| Some("nope".into())).unwrap_err().contains("COUNTERSIGN_LISTEN"));
    }

    #[test]
    fn database_urls_never_print_credentials() {
        let url = DatabaseUrl::new("postgres://admin:hunter2@db.internal/countersign");
        assert_eq!(format!("{url}"), "postgres://<redacted>");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(url.is_postgres());
    }
}
