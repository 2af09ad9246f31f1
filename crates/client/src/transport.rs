//! The HTTP transport: HTTPS that trusts exactly one key (the pin), never a CA; plain
//! HTTP only to this machine (tests, the embedded demo gateway).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crypto_glue::traits::{DecodeDer, EncodeDer};
use crypto_glue::x509::Certificate;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{Error, Result};

/// Every request gets this long, start to finish (the event stream excepted).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts the server's certificate only if its key is the pinned one. Chains, names
/// and dates are not consulted: the pin is the whole trust decision, and the
/// handshake signature proves the server holds the pinned key.
#[derive(Debug)]
struct PinnedKey {
    pin: String,
    algorithms: WebPkiSupportedAlgorithms,
    /// The pin actually seen when it did not match, for the error message.
    mismatch: Arc<Mutex<Option<String>>>,
}

fn pin_of(cert: &CertificateDer<'_>) -> Option<String> {
    let cert = Certificate::from_der(cert).ok()?;
    let spki = cert.tbs_certificate().subject_public_key_info().to_der().ok()?;
    Some(countersign_core::spki_pin(&spki))
}

impl ServerCertVerifier for PinnedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = pin_of(end_entity).unwrap_or_else(|| "<unparsable certificate>".into());
        if actual == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        if let Ok(mut m) = self.mismatch.lock() {
            *m = Some(actual);
        }
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// An HTTP client for one gateway.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    pub http: reqwest::Client,
    pub base: String,
    pin: Option<String>,
    mismatch: Arc<Mutex<Option<String>>>,
}

fn is_loopback(base: &str) -> bool {
    let rest = base.trim_start_matches("http://");
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Transport {
    /// A transport for `base` (`https://…` with a pin, or `http://` to this machine).
    pub fn new(base: &str, pin: Option<&str>) -> Result<Transport> {
        let base = base.trim_end_matches('/').to_owned();
        // reqwest needs a process-wide provider even for plain HTTP; ring, as the
        // gateway uses (installing twice is harmless).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mismatch = Arc::new(Mutex::new(None));
        let builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // Below the gateway's header_read_timeout (10 s by default), which also
            // ends idle keep-alive connections: never reuse one it is closing.
            .pool_idle_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("countersign-client/", env!("CARGO_PKG_VERSION")));
        let http = if base.starts_with("https://") {
            let pin = pin.ok_or_else(|| Error::Insecure(format!("{base}: HTTPS without a pinned key")))?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = PinnedKey {
                pin: pin.to_owned(),
                algorithms: provider.signature_verification_algorithms,
                mismatch: mismatch.clone(),
            };
            let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::Protocol(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            builder.use_preconfigured_tls(tls)
        } else if base.starts_with("http://") && is_loopback(&base) {
            builder
        } else {
            return Err(Error::Insecure(format!(
                "{base}: use https:// with a pin (plain HTTP only to this machine)"
            )));
        };
        let http = http.build().map_err(|e| Error::Protocol(e.to_string()))?;
        Ok(Transport { http, base, pin: pin.map(str::to_owned), mismatch })
    }

    /// Map a failed request to the most specific error.
    pub fn failure(&self, e: &reqwest::Error) -> Error {
        if let (Some(expected), Some(actual)) =
            (&self.pin, self.mismatch.lock().ok().and_then(|mut m| m.take()))
        {
            return Error::PinMismatch { expected: expected.clone(), actual };
        }
        if e.is_timeout() {
            Error::Timeout
        } else {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            Error::Unreachable(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pinned_https_or_loopback_http() {
        assert!(Transport::new("http://127.0.0.1:8440", None).is_ok());
        assert!(Transport::new("http://localhost:1", None).is_ok());
        assert!(Transport::new("http://[::1]:1/", None).is_ok());
        assert!(matches!(Transport::new("http://gw.example", None), Err(Error::Insecure(_))));
        assert!(matches!(Transport::new("http://127.0.0.1.evil.example", None), Err(Error::Insecure(_))));
        assert!(matches!(Transport::new("https://gw.example", None), Err(Error::Insecure(_))));
        assert!(Transport::new("https://gw.example", Some("sha256/x")).is_ok());
        assert!(matches!(Transport::new("ftp://gw.example", None), Err(Error::Insecure(_))));
    }
}
