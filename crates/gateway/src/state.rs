//! The application state every handler receives, and how it is built from the
//! configuration (database, keys, WebAuthn relying party, attestation trust).

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::GatewayKeys;
use crate::metrics::Metrics;
use crate::store::Store;

use crate::{auth, config, events, race, rate, tls};

/// Everything a request handler needs.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The gateway's secrets.
    pub keys: Arc<GatewayKeys>,
    /// Configuration.
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    /// Counters.
    pub metrics: Metrics,
    /// The WebAuthn relying party.
    pub webauthn: Arc<webauthn_rs::Webauthn>,
    /// Attestation CAs (and AAGUIDs) whose keys may enroll.
    pub attestation: webauthn_rs::prelude::AttestationCaList,
    /// Limits audit entries for repeated refusals.
    pub refusals: Arc<auth::RefusalThrottle>,
    /// HTTPS certificate and pin, when `[tls]` is configured.
    pub tls: Option<tls::Tls>,
    /// Bounds on open live event streams.
    pub streams: Arc<events::StreamLimits>,
    /// The one reader of the audit log for live event streams.
    pub events: Arc<events::Tail>,
    /// Admission control for intake: one permit per withdrawal being taken in.
    pub intake_slots: Arc<tokio::sync::Semaphore>,
    /// Pauses tests put inside critical sections (zero otherwise).
    pub race_windows: Arc<race::RaceWindows>,
    /// Rate limits for logins and enrollments started without a session.
    pub ceremony_limits: Arc<rate::CeremonyLimits>,
    /// The signed registry, by the audit head it was built at.
    pub registry_cache: Arc<tokio::sync::Mutex<Option<(i64, countersign_core::certificate::SignedRegistry)>>>,
    /// The authority chain as verified from the pinned genesis (see `crate::authority`).
    pub authority: Arc<AuthorityCache>,
}

/// The verified chain, shared by the handlers of one gateway process.
#[derive(Debug, Default)]
pub struct AuthorityCache {
    pub(crate) verified: tokio::sync::Mutex<Option<countersign_core::authority::Authority>>,
    /// The newest verified head, for the intake path (no lock across awaits).
    pub(crate) head: std::sync::RwLock<Option<countersign_core::authority::Head>>,
    /// A sealed genesis exists but the stored chain did not verify at the last look:
    /// nothing is released until it does (fail closed).
    pub(crate) broken: std::sync::atomic::AtomicBool,
}

impl AppState {
    /// Connect to the database, load (or create) the keys, store the initial policy.
    ///
    /// # Errors
    /// Unreachable database, unreadable key file.
    pub async fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        let store = Store::connect(&config.database_url()).await?;
        let keys = GatewayKeys::load_or_create(&config.keys_path())
            .map_err(|e| Error::internal(format!("key file {}: {e}", config.keys_path().display())))?;
        store.ensure_policy(&config.policy, clock.now()).await?;
        let (webauthn, attestation) = relying_party(&config)?;
        let tls = config.tls.as_ref().map(|t| tls::Tls::load(t, &config.data_dir)).transpose()?;
        let config_streams = config.max_event_streams;
        let config_intake = config.max_intake_in_flight;
        Ok(AppState {
            store,
            keys: Arc::new(keys),
            config: Arc::new(config),
            clock,
            metrics: Metrics::default(),
            webauthn: Arc::new(webauthn),
            attestation,
            refusals: Arc::default(),
            streams: events::StreamLimits::new(config_streams),
            events: Arc::default(),
            intake_slots: Arc::new(tokio::sync::Semaphore::new(config_intake)),
            race_windows: Arc::default(),
            ceremony_limits: Arc::default(),
            registry_cache: Arc::default(),
            authority: Arc::default(),
            tls,
        })
    }
}

impl AppState {
    /// The URL clients use to reach this gateway.
    #[must_use]
    pub fn public_url(&self) -> String {
        match &self.config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.config.listen),
        }
    }

    /// The enrollment link an approver's client opens: the gateway's URL, the
    /// single-use code and, with TLS, the pin of the gateway's key.
    #[must_use]
    pub fn enrollment_link(&self, code: &str) -> String {
        let mut link = format!("countersign://enroll?gateway={}&code={code}", percent(&self.public_url()));
        if let Some(tls) = &self.tls {
            link.push_str(&format!("&pin={}", percent(tls.pin())));
        }
        link
    }
}

/// Percent-encode everything but unreserved characters (RFC 3986).
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn relying_party(
    config: &Config,
) -> Result<(webauthn_rs::Webauthn, webauthn_rs::prelude::AttestationCaList)> {
    use webauthn_rs::prelude::{AttestationCaListBuilder, Url, Uuid};
    let bad = |m: String| Error::internal(format!("[webauthn] {m}"));
    let origin = Url::parse(&config.webauthn.origin).map_err(|e| bad(format!("origin: {e}")))?;
    let timeout = std::time::Duration::from_millis(u64::from(authenticator_timeout_ms(config)));
    let webauthn = webauthn_rs::WebauthnBuilder::new(&config.webauthn.rp_id, &origin)
        .and_then(|b| b.rp_name("Countersign").timeout(timeout).build())
        .map_err(|e| bad(format!("rp_id/origin: {e:?}")))?;
    let mut cas = AttestationCaListBuilder::new();
    let mut presets = webauthn_rs::prelude::AttestationCaList::default();
    for preset in &config.webauthn.attestation_presets {
        let roots: &[&[u8]] = match preset {
            config::AttestationPreset::Yubikey => YUBICO_ROOTS,
            config::AttestationPreset::Permissive => PERMISSIVE_ROOTS,
            config::AttestationPreset::Development => {
                tracing::warn!(
                    "[webauthn] attestation preset `development`: SOFTWARE authenticators can enroll. \
                     Never use this where real money moves."
                );
                let aaguid = Uuid::parse_str(countersign_core::SOFTWARE_AUTHENTICATOR_AAGUID)
                    .map_err(|e| bad(format!("softkey aaguid: {e}")))?;
                cas.insert_device_pem(
                    SOFTKEY_DEV_CA_PEM,
                    aaguid,
                    "countersign-softkey (SOFTWARE authenticator, development only)".into(),
                    Default::default(),
                )
                .map_err(|e| bad(format!("{preset:?}: {e:?}")))?;
                continue;
            }
        };
        for pem in roots {
            let list = webauthn_rs::prelude::AttestationCaList::try_from(*pem)
                .map_err(|e| bad(format!("{preset:?}: {e:?}")))?;
            presets.union(&list);
        }
    }
    for ca in &config.webauthn.attestation_cas {
        let pem = std::fs::read(&ca.pem_file).map_err(|e| bad(format!("{}: {e}", ca.pem_file.display())))?;
        for aaguid in &ca.aaguids {
            let aaguid = Uuid::parse_str(aaguid).map_err(|e| bad(format!("aaguid {aaguid}: {e}")))?;
            cas.insert_device_pem(&pem, aaguid, ca.description.clone(), Default::default())
                .map_err(|e| bad(format!("{}: {e:?}", ca.pem_file.display())))?;
        }
    }
    let mut list = cas.build();
    list.union(&presets);
    Ok((webauthn, list))
}

/// How long the key is given for a touch, as the WebAuthn options say: the
/// challenge's lifetime (real and decoy ceremonies alike).
#[must_use]
pub fn authenticator_timeout_ms(config: &Config) -> u32 {
    u32::try_from(config.webauthn.challenge_ttl_seconds.saturating_mul(1000)).unwrap_or(u32::MAX)
}

/// Yubico's attestation roots (public certificates; see `attestation/README.md`).
const YUBICO_ROOTS: &[&[u8]] = &[
    include_bytes!("../attestation/yubico-u2f-root-ca-serial-457200631.pem"),
    include_bytes!("../attestation/yubico-fido-root-450203556.pem"),
    include_bytes!("../attestation/yubico-attestation-root-1.pem"),
];

/// Every vendor root in `attestation/` except the development CA.
const PERMISSIVE_ROOTS: &[&[u8]] = &[
    include_bytes!("../attestation/yubico-u2f-root-ca-serial-457200631.pem"),
    include_bytes!("../attestation/yubico-fido-root-450203556.pem"),
    include_bytes!("../attestation/yubico-attestation-root-1.pem"),
    include_bytes!("../attestation/google-titan-security-key-root.pem"),
    include_bytes!("../attestation/feitian-fido-root-ca-us-2018.pem"),
    include_bytes!("../attestation/feitian-fido-root-ca-cn-2018.pem"),
    include_bytes!("../attestation/feitian-fido-root-ca-us-2022.pem"),
    include_bytes!("../attestation/feitian-fido-root-ca-cn-2022.pem"),
    include_bytes!("../attestation/feitian-fido-ea-root.pem"),
    include_bytes!("../attestation/feitian-ft-fido-0200.pem"),
    include_bytes!("../attestation/solokeys-root.pem"),
    include_bytes!("../attestation/nitrokey-fido2-root.pem"),
    include_bytes!("../attestation/token2-root.pem"),
];

/// The development CA of `countersign-softkey` (public; see that crate's docs). Kept
/// equal to what the softkey derives by a test in `countersign-softkey`.
const SOFTKEY_DEV_CA_PEM: &[u8] = include_bytes!("../attestation/countersign-softkey-dev-ca.pem");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttestationPreset;

    fn config() -> Config {
        let path =
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../countersign.example.toml"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Config::from_toml(&text, path).unwrap()
    }

    #[test]
    fn attestation_trust_comes_from_presets_and_files() {
        let mut c = config();
        assert_eq!(
            c.webauthn.attestation_presets,
            vec![AttestationPreset::Yubikey],
            "the example trusts YubiKeys"
        );
        let (_, yubico) = relying_party(&c).unwrap();
        assert_eq!(yubico.len(), 3, "Yubico's three roots, 5.7+ firmware included");
        c.webauthn.attestation_presets = vec![AttestationPreset::Permissive];
        let (_, permissive) = relying_party(&c).unwrap();
        assert_eq!(permissive.len(), 13, "every bundled vendor root parses");
        c.webauthn.attestation_presets = vec![AttestationPreset::Development];
        let (_, dev) = relying_party(&c).unwrap();
        assert_eq!(dev.len(), 1, "the development preset trusts only the softkey CA");
        c.webauthn.attestation_presets.clear();
        let (_, none) = relying_party(&c).unwrap();
        assert!(none.is_empty(), "nothing trusted unless configured");
        c.webauthn.origin = "https://evil.example".into();
        assert!(relying_party(&c).is_err(), "the origin must be within the RP id");
    }
}
