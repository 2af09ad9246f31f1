//! The authenticator side of PIN/UV auth protocol 2 (CTAP 2.1 §6.5.7).

use crypto_glue::aes256cbc::{Aes256CbcDec, Aes256CbcEnc, Aes256CbcIv, Aes256Key, block_padding::NoPadding};
use crypto_glue::aes256cbc::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use crypto_glue::hkdf_s256::HkdfSha256;
use hmac::{Hmac, KeyInit, Mac};
use p256::elliptic_curve::sec1::{FromSec1Point, ToSec1Point};
use p256::{NonZeroScalar, PublicKey, Sec1Point};
use serde_cbor_2::Value;
use sha2::Sha256;

use crate::ctap::{Status, map};

/// The authenticator's key-agreement key (regenerated at power-up and after a wrong
/// PIN), and the shared secret derived from a platform's public key.
pub(crate) struct KeyAgreement {
    secret: NonZeroScalar,
}

/// `hmac_key || aes_key`, 64 bytes.
pub(crate) struct SharedSecret([u8; 64]);

impl KeyAgreement {
    pub fn generate() -> Result<Self, Status> {
        let bytes = crate::random::<32>()?;
        let secret = Option::from(NonZeroScalar::from_repr(bytes.into())).ok_or(Status::OTHER)?;
        Ok(KeyAgreement { secret })
    }

    /// `getPublicKey()` as a COSE_Key with alg ECDH-ES+HKDF-256 (-25).
    pub fn public_cose(&self) -> Value {
        let point = PublicKey::from_secret_scalar(&self.secret).to_sec1_point(false);
        let coord = |c: Option<&[u8]>| Value::Bytes(c.map(<[u8]>::to_vec).unwrap_or_default());
        map([
            (1, Value::Integer(2)),
            (3, Value::Integer(-25)),
            (-1, Value::Integer(1)),
            (-2, coord(point.x().map(|x| &x[..]))),
            (-3, coord(point.y().map(|y| &y[..]))),
        ])
    }

    /// `decapsulate(peerCoseKey)`: ECDH, then HKDF into the HMAC and AES keys.
    pub fn shared_secret(&self, peer: Option<&Value>) -> Result<SharedSecret, Status> {
        let Some(Value::Map(peer)) = peer else { return Err(Status::MISSING_PARAMETER) };
        let coord = |k: i128| match peer.get(&Value::Integer(k)) {
            Some(Value::Bytes(b)) => {
                <[u8; 32]>::try_from(b.as_slice()).map_err(|_| Status::INVALID_PARAMETER)
            }
            _ => Err(Status::INVALID_PARAMETER),
        };
        let (x, y) = (coord(-2)?, coord(-3)?);
        let point = Sec1Point::from_affine_coordinates((&x).into(), (&y).into(), false);
        let peer =
            Option::<PublicKey>::from(PublicKey::from_sec1_point(&point)).ok_or(Status::INVALID_PARAMETER)?;
        let z = p256::ecdh::diffie_hellman(self.secret, peer.as_affine());
        let hkdf = HkdfSha256::new(Some(&[0u8; 32]), z.raw_secret_bytes());
        let mut out = [0u8; 64];
        let (hmac_key, aes_key) = out.split_at_mut(32);
        hkdf.expand(b"CTAP2 HMAC key", hmac_key).map_err(|_| Status::OTHER)?;
        hkdf.expand(b"CTAP2 AES key", aes_key).map_err(|_| Status::OTHER)?;
        Ok(SharedSecret(out))
    }
}

impl SharedSecret {
    fn aes_key(&self) -> Aes256Key {
        let mut key = Aes256Key::default();
        key.copy_from_slice(&self.0[32..]);
        key
    }

    /// `decrypt(key, iv || ct)`; the length must be a whole number of blocks.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, Status> {
        if ciphertext.len() < 32 || !ciphertext.len().is_multiple_of(16) {
            return Err(Status::INVALID_PARAMETER);
        }
        let (iv, ct) = ciphertext.split_at(16);
        let mut aes_iv = Aes256CbcIv::default();
        aes_iv.copy_from_slice(iv);
        Aes256CbcDec::new(&self.aes_key(), &aes_iv)
            .decrypt_padded_vec::<NoPadding>(ct)
            .map_err(|_| Status::INVALID_PARAMETER)
    }

    /// `encrypt(key, plaintext)` = random iv || AES-256-CBC(plaintext).
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, Status> {
        let iv_bytes = crate::random::<16>()?;
        let mut iv = Aes256CbcIv::default();
        iv.copy_from_slice(&iv_bytes);
        let ct = Aes256CbcEnc::new(&self.aes_key(), &iv).encrypt_padded_vec::<NoPadding>(plaintext);
        Ok([iv_bytes.as_slice(), ct.as_slice()].concat())
    }

    /// `verify(hmac_key, message, signature)`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        verify_hmac(&self.0[..32], message, signature)
    }
}

/// `verify(key, message, signature)` of protocol 2: the full 32-byte HMAC-SHA-256,
/// compared in constant time.
pub(crate) fn verify_hmac(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else { return false };
    mac.update(message);
    mac.verify_slice(signature).is_ok()
}
