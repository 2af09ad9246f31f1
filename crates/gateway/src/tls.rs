//! HTTPS: the gateway's certificate (from files, or self-signed and kept in the data
//! directory), the listener, and the **SPKI pin** clients check instead of a CA.
//!
//! The pin is `sha256/` + base64url(SHA-256(SubjectPublicKeyInfo DER)). It travels
//! in every enrollment link, so a client that enrolled never trusts any other key
//! for this gateway, whatever CAs would say. Rotating the TLS key therefore means
//! re-pinning every client (by design; see `docs/design.md`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crypto_glue::traits::{EncodeDer, EncodePem, LineEndingPem, ToExtension};
use crypto_glue::x509::profile::BuilderProfile;
use crypto_glue::x509::{
    BasicConstraints, Builder, CertBuilderError, Certificate, CertificateBuilder, Extension, GeneralName,
    Ia5String, Name, SerialNumber, SubjectAltName, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef,
    TbsCertificate, Time, Validity,
};
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePrivateKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::{Error, Result};

/// `[tls]`: HTTPS for approvers' clients. Without `cert_file`/`key_file` the gateway
/// makes a self-signed certificate in `<data_dir>/tls/` on first start (clients pin
/// its key, so no CA is involved).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM PKCS#8 private key (ECDSA P-256).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Host names and IP addresses for a self-signed certificate.
    #[serde(default = "default_names")]
    pub names: Vec<String>,
}

fn default_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

/// A loaded certificate and key, ready to serve, with the pin clients check.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    pin: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("pin", &self.pin).finish_non_exhaustive()
    }
}

/// `sha256/<base64url>` of a certificate's SubjectPublicKeyInfo.
///
/// # Errors
/// The certificate does not parse.
pub fn spki_pin(cert_der: &[u8]) -> Result<String> {
    use crypto_glue::traits::DecodeDer;
    let cert = Certificate::from_der(cert_der).map_err(|e| Error::internal(format!("certificate: {e}")))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| Error::internal(format!("certificate key: {e}")))?;
    Ok(countersign_core::spki_pin(&spki))
}

impl Tls {
    /// Load `[tls]`: the configured files, or the self-signed pair in `data_dir`
    /// (created on first use, key file mode 0600).
    ///
    /// # Errors
    /// Unreadable or invalid files.
    pub fn load(config: &TlsConfig, data_dir: &Path) -> Result<Tls> {
        let (cert_pem, key_pem) = match (&config.cert_file, &config.key_file) {
            (Some(c), Some(k)) => (read(c)?, read(k)?),
            (None, None) => self_signed(&data_dir.join("tls"), &config.names)?,
            _ => return Err(Error::internal("[tls] needs both cert_file and key_file, or neither")),
        };
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::internal(format!("[tls] certificate: {e}")))?;
        let leaf = certs.first().ok_or_else(|| Error::internal("[tls] no certificate in cert_file"))?;
        let pin = spki_pin(leaf)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| Error::internal(format!("[tls] no private key in key_file: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal(format!("[tls] {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| Error::internal(format!("[tls] certificate and key: {e}")))?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(server)), pin })
    }

    /// The SPKI pin of the served certificate.
    #[must_use]
    pub fn pin(&self) -> &str {
        &self.pin
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::internal(format!("[tls] {}: {e}", path.display())))
}

struct ServerProfile {
    subject: Name,
    names: Vec<String>,
}

impl BuilderProfile for ServerProfile {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }
    fn get_subject(&self) -> Name {
        self.subject.clone()
    }
    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> std::result::Result<Vec<Extension>, CertBuilderError> {
        let mut extensions = Vec::with_capacity(2);
        let leaf = BasicConstraints { ca: false, path_len_constraint: None };
        extensions.push(leaf.to_extension(tbs.subject(), &extensions)?);
        let names = self
            .names
            .iter()
            .filter_map(|n| match IpAddr::from_str(n) {
                Ok(IpAddr::V4(ip)) => {
                    crypto_glue::x509::OctetString::new(ip.octets().to_vec()).ok().map(GeneralName::IpAddress)
                }
                Ok(IpAddr::V6(ip)) => {
                    crypto_glue::x509::OctetString::new(ip.octets().to_vec()).ok().map(GeneralName::IpAddress)
                }
                Err(_) => Ia5String::new(n).ok().map(GeneralName::DnsName),
            })
            .collect();
        extensions.push(SubjectAltName(names).to_extension(tbs.subject(), &extensions)?);
        Ok(extensions)
    }
}

/// The self-signed certificate and key in `dir`, made on first use.
fn self_signed(dir: &Path, names: &[String]) -> Result<(String, String)> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert_path.exists() && key_path.exists() {
        return Ok((read(&cert_path)?, read(&key_path)?));
    }
    let fail = |what: &str| Error::internal(format!("[tls] self-signed certificate: {what}"));
    let mut scalar = [0u8; 32];
    let key = loop {
        getrandom::fill(&mut scalar).map_err(|_| fail("randomness"))?;
        if let Ok(k) = SigningKey::from_slice(&scalar) {
            break k;
        }
    };
    let spki = SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).map_err(|_| fail("public key"))?;
    let subject = Name::from_str("CN=Countersign gateway,O=Countersign").map_err(|_| fail("name"))?;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|_| fail("randomness"))?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    let serial = SerialNumber::new(&serial).map_err(|_| fail("serial"))?;
    // Fixed dates, so no clock is read: valid 2025-01-01 to 2045-01-01.
    let at = |secs| Time::try_from(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    let validity = match (at(1_735_689_600), at(2_366_841_600)) {
        (Ok(a), Ok(b)) => Validity::new(a, b),
        _ => return Err(fail("validity")),
    };
    let profile = ServerProfile { subject, names: names.to_vec() };
    let cert = CertificateBuilder::new(profile, serial, validity, spki)
        .and_then(|b| b.build::<SigningKey, DerSignature>(&key))
        .map_err(|e| fail(&e.to_string()))?;
    let cert_pem = cert.to_pem(LineEndingPem::LF).map_err(|_| fail("PEM"))?;
    let key_pem = key.to_pkcs8_pem(LineEndingPem::LF).map_err(|_| fail("key PEM"))?;
    std::fs::create_dir_all(dir).map_err(|e| fail(&e.to_string()))?;
    crate::keys::write_private(&key_path, key_pem.as_bytes()).map_err(|e| fail(&e.to_string()))?;
    std::fs::write(&cert_path, cert_pem.as_bytes()).map_err(|e| fail(&e.to_string()))?;
    Ok((cert_pem, key_pem.to_string()))
}

/// Accepts TCP connections and completes TLS handshakes concurrently (each bounded
/// by a timeout), handing finished ones to the HTTP server.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// Handshakes in flight at once, and how long one may take.
const MAX_HANDSHAKES: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    /// Serve TLS on `tcp`.
    ///
    /// # Errors
    /// The socket has no local address.
    pub fn new(tcp: TcpListener, tls: &Tls) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tls.acceptor.clone();
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let (stream, peer) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The accept loop ended (the runtime is shutting down): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let config = TlsConfig { names: default_names(), ..TlsConfig::default() };
        let first = Tls::load(&config, dir.path()).unwrap();
        let again = Tls::load(&config, dir.path()).unwrap();
        assert_eq!(first.pin(), again.pin(), "the same key on restart");
        assert!(first.pin().starts_with("sha256/") && first.pin().len() == 7 + 43);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls/key.pem")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Tls::load(&config, other.path()).unwrap().pin(), first.pin(), "a fresh key elsewhere");

        // The same pair given as files is the same key; one file alone is refused.
        let files = TlsConfig {
            cert_file: Some(dir.path().join("tls/cert.pem")),
            key_file: Some(dir.path().join("tls/key.pem")),
            names: vec![],
        };
        assert_eq!(Tls::load(&files, other.path()).unwrap().pin(), first.pin());
        let half = TlsConfig { key_file: None, ..files.clone() };
        assert!(Tls::load(&half, other.path()).is_err());
        let garbage = other.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let bad = TlsConfig { cert_file: Some(garbage), ..files };
        assert!(Tls::load(&bad, other.path()).is_err());
    }
}
