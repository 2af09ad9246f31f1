//! The gateway's own secrets: an Ed25519 signing key (audit checkpoints, settlement
//! webhooks) and a master key from which HMAC API-key secrets are derived.
//!
//! HMAC API-key secrets are never stored: the gateway derives each from the master
//! key, the key id and a random per-key salt, hands it out once, and derives it again
//! to verify. Reading the database is not enough to forge HMAC requests.

use std::fmt;
use std::io::Write;
use std::path::Path;

use data_encoding::HEXLOWER;
use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Length of the key file's content: 64 random bytes, hex.
const KEY_FILE_HEX_LEN: usize = 128;

/// The gateway's secrets. `Debug` shows only the public key.
pub struct GatewayKeys {
    signing: SigningKey,
    hmac_master: [u8; 32],
}

impl fmt::Debug for GatewayKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayKeys")
            .field("public_key", &HEXLOWER.encode(self.signing.verifying_key().as_bytes()))
            .field("secrets", &"<redacted>")
            .finish()
    }
}

/// Fill a buffer from the operating system's CSPRNG.
///
/// # Errors
/// When the OS has no randomness to give (the gateway refuses to run then).
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(buf)
}

impl GatewayKeys {
    /// From 64 bytes of key material.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        let mut seed = [0u8; 32];
        let mut master = [0u8; 32];
        seed.copy_from_slice(&bytes[..32]);
        master.copy_from_slice(&bytes[32..]);
        GatewayKeys { signing: SigningKey::from_bytes(&seed), hmac_master: master }
    }

    /// Read the key file, or create it (mode 0600) with fresh random keys.
    ///
    /// # Errors
    /// I/O errors, or a file that is not 128 hex digits.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = text.trim();
                let bytes = HEXLOWER
                    .decode(text.as_bytes())
                    .ok()
                    .filter(|_| text.len() == KEY_FILE_HEX_LEN)
                    .and_then(|b| <[u8; 64]>::try_from(b).ok())
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: expected {KEY_FILE_HEX_LEN} lowercase hex digits", path.display()),
                        )
                    })?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = random_bytes::<64>()?;
                write_private(path, HEXLOWER.encode(&bytes).as_bytes())?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) => Err(e),
        }
    }

    /// The signing key (for checkpoints and webhooks).
    #[must_use]
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The public half, which verifiers trust.
    #[must_use]
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The HMAC secret of an API key:
    /// `HMAC-SHA256(master, "countersign:api-key-secret:v1" || 0x00 || key_id || 0x00 || salt)`.
    #[must_use]
    pub fn api_key_secret(&self, key_id: &str, salt: &[u8]) -> ApiKeySecret {
        let parts: [&[u8]; 4] = [b"countersign:api-key-secret:v1\0", key_id.as_bytes(), &[0], salt];
        ApiKeySecret(hmac_sha256(&self.hmac_master, &parts).finalize().into_bytes().into())
    }

    /// `len` bytes derived from the gateway's secret for `input` under `domain`
    /// (HMAC-SHA256 in counter mode): stable per input, unpredictable without the
    /// key file. Used for decoy credential ids.
    #[must_use]
    pub fn decoy_bytes(&self, domain: &[u8], input: &[u8], len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 32);
        let mut block: u32 = 0;
        while out.len() < len {
            let counter = block.to_be_bytes();
            let parts: [&[u8]; 5] = [domain, &[0], input, &[0], &counter];
            out.extend_from_slice(&hmac_sha256(&self.hmac_master, &parts).finalize().into_bytes());
            block += 1;
        }
        out.truncate(len);
        out
    }
}

/// HMAC-SHA256 over the concatenated parts with a 32-byte key. The key is
/// zero-padded to the 64-byte block, exactly as RFC 2104 does for short keys, which
/// makes construction infallible.
pub fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    for part in parts {
        mac.update(part);
    }
    mac
}

/// An HMAC API-key secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret([u8; 32]);

impl ApiKeySecret {
    /// The raw bytes (the HMAC key).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// base64url, the form handed to the key's holder once.
    #[must_use]
    pub fn to_base64url(&self) -> String {
        data_encoding::BASE64URL_NOPAD.encode(&self.0)
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

/// Create a new secret file readable by its owner only (mode 0600), synced to disk.
/// Refuses to overwrite an existing file.
///
/// # Errors
/// The file exists or cannot be written.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let keys = GatewayKeys::from_bytes(&[3u8; 64]);
        let secret = keys.api_key_secret("key_1", b"salt");
        let shown = format!("{keys:?} {secret:?}");
        assert!(!shown.contains(&secret.to_base64url()));
        assert!(!shown.contains(&HEXLOWER.encode(&[3u8; 32])));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn secrets_depend_on_key_id_and_salt() {
        let keys = GatewayKeys::from_bytes(&[3u8; 64]);
        let a = keys.api_key_secret("key_1", b"salt");
        assert_eq!(a, keys.api_key_secret("key_1", b"salt"));
        assert_ne!(a, keys.api_key_secret("key_2", b"salt"));
        assert_ne!(a, keys.api_key_secret("key_1", b"salt2"));
    }

    #[test]
    fn key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/gateway-keys");
        let a = GatewayKeys::load_or_create(&path).unwrap();
        let b = GatewayKeys::load_or_create(&path).unwrap();
        assert_eq!(a.verifying_key(), b.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").unwrap();
        assert_eq!(GatewayKeys::load_or_create(&path).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }
}
