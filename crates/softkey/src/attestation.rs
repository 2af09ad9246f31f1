//! The softkey's packed attestation: a development CA and one attestation certificate.
//!
//! **WARNING: the keys here are derived from public labels. They are not secret and
//! they prove nothing.** Anyone can mint an attestation that chains to the
//! development CA. The gateway trusts it only under the explicit `development`
//! attestation preset (off unless configured), and marks every such credential as
//! software. Both certificates are deterministic (fixed keys, serials and validity,
//! RFC 6979 signatures), so the CA certificate committed at
//! `crates/gateway/attestation/countersign-softkey-dev-ca.pem` can be checked
//! byte for byte by a test.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use crypto_glue::traits::{EncodeDer, EncodePem, LineEndingPem, ToExtension};
use crypto_glue::x509::profile::BuilderProfile;
use crypto_glue::x509::profile::cabf::Root;
use crypto_glue::x509::{
    BasicConstraints, Builder, CertBuilderError, Certificate, CertificateBuilder, Extension, Name,
    SerialNumber, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef, TbsCertificate, Time, Validity,
};
use p256::ecdsa::{DerSignature, SigningKey};
use sha2::{Digest, Sha256};

use crate::Error;

const CA_SUBJECT: &str = "CN=Countersign softkey development CA - NOT FOR PRODUCTION,O=Countersign,C=ZZ";
// Packed attestation requires OU=Authenticator Attestation (WebAuthn §8.2.1).
const LEAF_SUBJECT: &str =
    "C=ZZ,O=Countersign,OU=Authenticator Attestation,CN=Countersign softkey - SOFTWARE";
/// 2026-01-01T00:00:00Z and 2046-01-01T00:00:00Z.
const NOT_BEFORE: u64 = 1_767_225_600;
const NOT_AFTER: u64 = 2_398_377_600;

/// The attestation signing key and its certificate chain (leaf first).
pub(crate) struct Attestation {
    pub key: SigningKey,
    pub leaf_der: Vec<u8>,
}

/// A P-256 key from a public label. Deterministic on purpose: see the module docs.
pub(crate) fn labelled_key(label: &str) -> Result<SigningKey, Error> {
    let scalar = Sha256::digest(label.as_bytes());
    SigningKey::from_slice(&scalar).map_err(|_| Error::Crypto("labelled key is out of range"))
}

pub(crate) fn validity() -> Result<Validity, Error> {
    let at = |secs| Time::try_from(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    match (at(NOT_BEFORE), at(NOT_AFTER)) {
        (Ok(from), Ok(to)) => Ok(Validity::new(from, to)),
        _ => Err(Error::Crypto("certificate validity")),
    }
}

pub(crate) fn name(dn: &str) -> Result<Name, Error> {
    Name::from_str(dn).map_err(|_| Error::Crypto("certificate name"))
}

pub(crate) fn spki(key: &SigningKey) -> Result<SubjectPublicKeyInfoOwned, Error> {
    SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).map_err(|_| Error::Crypto("public key info"))
}

pub(crate) fn serial(n: u8) -> Result<SerialNumber, Error> {
    SerialNumber::new(&[0x5c, 0x0f, 0x7c, n]).map_err(|_| Error::Crypto("serial number"))
}

/// The development CA: key and self-signed certificate.
fn dev_ca() -> Result<(SigningKey, Certificate), Error> {
    let key = labelled_key("countersign softkey development attestation CA v1")?;
    let profile = Root::new(false, name(CA_SUBJECT)?).map_err(|_| Error::Crypto("CA profile"))?;
    let cert = CertificateBuilder::new(profile, serial(1)?, validity()?, spki(&key)?)
        .and_then(|b| b.build::<SigningKey, DerSignature>(&key))
        .map_err(|_| Error::Crypto("CA certificate"))?;
    Ok((key, cert))
}

/// The development CA certificate, PEM. This is what the gateway's `development`
/// attestation preset trusts.
pub fn dev_ca_pem() -> Result<String, Error> {
    let (_, cert) = dev_ca()?;
    cert.to_pem(LineEndingPem::LF).map_err(|_| Error::Crypto("PEM encoding"))
}

/// A certificate profile: issuer and subject as given, basic constraints, and any
/// extra extensions (the PIV card's Yubico extensions).
pub(crate) struct Profile {
    pub issuer: Name,
    pub subject: Name,
    pub ca: bool,
    pub extra: Vec<Extension>,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> Result<Vec<Extension>, CertBuilderError> {
        let mut extensions = Vec::with_capacity(1 + self.extra.len());
        let constraints = BasicConstraints { ca: self.ca, path_len_constraint: None };
        extensions.push(constraints.to_extension(tbs.subject(), &extensions)?);
        extensions.extend(self.extra.iter().cloned());
        Ok(extensions)
    }
}

/// The attestation key and its certificate, issued by the development CA.
pub(crate) fn attestation() -> Result<Attestation, Error> {
    let (ca_key, ca_cert) = dev_ca()?;
    let key = labelled_key("countersign softkey attestation key v1")?;
    let profile = Profile {
        issuer: ca_cert.tbs_certificate().subject().clone(),
        subject: name(LEAF_SUBJECT)?,
        ca: false,
        extra: Vec::new(),
    };
    let leaf = CertificateBuilder::new(profile, serial(2)?, validity()?, spki(&key)?)
        .and_then(|b| b.build::<SigningKey, DerSignature>(&ca_key))
        .map_err(|_| Error::Crypto("attestation certificate"))?;
    let leaf_der = leaf.to_der().map_err(|_| Error::Crypto("DER encoding"))?;
    Ok(Attestation { key, leaf_der })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed PEM is exactly what the code derives. Regenerate with
    /// `COUNTERSIGN_BLESS_VECTORS=1 cargo test -p countersign-softkey`.
    #[test]
    fn committed_dev_ca_matches_the_derived_one() {
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../gateway/attestation/countersign-softkey-dev-ca.pem");
        let derived = dev_ca_pem().unwrap();
        if std::env::var_os("COUNTERSIGN_BLESS_VECTORS").is_some() {
            std::fs::write(path, &derived).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap();
        assert_eq!(committed, derived, "run with COUNTERSIGN_BLESS_VECTORS=1 to regenerate");
        assert_eq!(dev_ca_pem().unwrap(), derived, "the CA certificate must be deterministic");
    }

    #[test]
    fn attestation_is_deterministic() {
        assert_eq!(attestation().unwrap().leaf_der, attestation().unwrap().leaf_der);
    }
}
