//! The CTAP2 commands the softkey answers, as a USB key would: CBOR in, status and
//! CBOR out. Commands that need the user's touch are split in two: [`Device::begin`]
//! checks everything and [`Device::finish`] signs after the touch.

use std::collections::BTreeMap;

use p256::ecdsa::{DerSignature, SigningKey, signature::Signer};
use serde_cbor_2::Value;
use sha2::{Digest, Sha256};

use crate::Device;
use crate::pin::{KeyAgreement, verify_hmac};

/// A CTAP status code (CTAP 2.1 §8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u8);

impl Status {
    pub const INVALID_COMMAND: Status = Status(0x01);
    pub const INVALID_PARAMETER: Status = Status(0x02);
    pub const CBOR_UNEXPECTED_TYPE: Status = Status(0x11);
    pub const INVALID_CBOR: Status = Status(0x12);
    pub const MISSING_PARAMETER: Status = Status(0x14);
    pub const CREDENTIAL_EXCLUDED: Status = Status(0x19);
    pub const UNSUPPORTED_ALGORITHM: Status = Status(0x26);
    pub const UNSUPPORTED_OPTION: Status = Status(0x2B);
    pub const INVALID_OPTION: Status = Status(0x2C);
    pub const NO_CREDENTIALS: Status = Status(0x2E);
    pub const NOT_ALLOWED: Status = Status(0x30);
    pub const PIN_INVALID: Status = Status(0x31);
    pub const PIN_BLOCKED: Status = Status(0x32);
    pub const PIN_AUTH_INVALID: Status = Status(0x33);
    pub const PIN_AUTH_BLOCKED: Status = Status(0x34);
    pub const PIN_NOT_SET: Status = Status(0x35);
    pub const PUAT_REQUIRED: Status = Status(0x36);
    pub const PIN_POLICY_VIOLATION: Status = Status(0x37);
    pub const INVALID_SUBCOMMAND: Status = Status(0x3E);
    pub const UNAUTHORIZED_PERMISSION: Status = Status(0x40);
    pub const OTHER: Status = Status(0x7F);
}

/// PIN retries a fresh PIN gets, and wrong PINs allowed per power-up.
pub(crate) const PIN_RETRIES: u8 = 8;
const MISMATCHES_PER_POWER_UP: u8 = 3;
/// pinUvAuthToken permissions (CTAP 2.1 §6.5.5.7).
const PERMISSION_MC: u64 = 0x01;
const PERMISSION_GA: u64 = 0x02;
/// ES256.
const ES256: i128 = -7;
/// authenticatorData flags.
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;
const ED: u8 = 0x80;

/// A CBOR map with integer keys.
pub(crate) fn map<const N: usize>(entries: [(i128, Value); N]) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (Value::Integer(k), v)).collect())
}

fn text_map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (Value::Text(k.to_owned()), v)).collect())
}

fn encode(v: &Value) -> Result<Vec<u8>, Status> {
    serde_cbor_2::to_vec(v).map_err(|_| Status::OTHER)
}

/// The parameters of one request: a CBOR map with integer keys.
struct Params(BTreeMap<Value, Value>);

impl Params {
    fn parse(body: &[u8]) -> Result<Params, Status> {
        match serde_cbor_2::from_slice::<Value>(body).map_err(|_| Status::INVALID_CBOR)? {
            Value::Map(m) => Ok(Params(m)),
            _ => Err(Status::CBOR_UNEXPECTED_TYPE),
        }
    }
    fn get(&self, k: i128) -> Option<&Value> {
        self.0.get(&Value::Integer(k))
    }
    fn bytes(&self, k: i128) -> Result<Option<&[u8]>, Status> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bytes(b)) => Ok(Some(b)),
            Some(_) => Err(Status::CBOR_UNEXPECTED_TYPE),
        }
    }
    fn need_bytes(&self, k: i128) -> Result<&[u8], Status> {
        self.bytes(k)?.ok_or(Status::MISSING_PARAMETER)
    }
    fn uint(&self, k: i128) -> Result<Option<u64>, Status> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Integer(i)) => u64::try_from(*i).map(Some).map_err(|_| Status::INVALID_PARAMETER),
            Some(_) => Err(Status::CBOR_UNEXPECTED_TYPE),
        }
    }
    fn text(&self, k: i128) -> Result<Option<&str>, Status> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Text(t)) => Ok(Some(t)),
            Some(_) => Err(Status::CBOR_UNEXPECTED_TYPE),
        }
    }
    /// The `options` map: (`up`, `uv`, `rk`), each absent, true or false.
    fn options(&self, k: i128) -> Result<[Option<bool>; 3], Status> {
        let Some(v) = self.get(k) else { return Ok([None; 3]) };
        let Value::Map(m) = v else { return Err(Status::CBOR_UNEXPECTED_TYPE) };
        let opt = |name: &str| match m.get(&Value::Text(name.to_owned())) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Status::CBOR_UNEXPECTED_TYPE),
        };
        Ok([opt("up")?, opt("uv")?, opt("rk")?])
    }
}

/// What waits for the user's touch.
pub(crate) enum Pending {
    MakeCredential {
        rp_id_hash: [u8; 32],
        client_data_hash: Vec<u8>,
        uv: bool,
        cred_protect: Option<u8>,
        excluded: bool,
    },
    GetAssertion {
        rp_id_hash: [u8; 32],
        client_data_hash: Vec<u8>,
        uv: bool,
        up: bool,
        id: Vec<u8>,
        key: SigningKey,
    },
    Selection,
    Reset,
}

/// The result of [`Device::begin`].
pub(crate) enum Step {
    Done(Vec<u8>),
    Touch(Pending),
}

/// The pinUvAuthToken currently issued (one per power-up).
pub(crate) struct PinToken {
    pub value: [u8; 32],
    pub permissions: u64,
    pub rp_id: Option<String>,
}

impl Device {
    /// Check a request and either answer it or ask for the user's touch.
    pub(crate) fn begin(&mut self, cmd: &[u8]) -> Result<Step, Status> {
        let (&code, body) = cmd.split_first().ok_or(Status::INVALID_COMMAND)?;
        match code {
            0x04 => self.get_info().map(Step::Done),
            0x01 => self.make_credential(&Params::parse(body)?),
            0x02 => self.get_assertion(&Params::parse(body)?),
            0x06 => self.client_pin(&Params::parse(body)?).map(Step::Done),
            0x07 => Ok(Step::Touch(Pending::Reset)),
            0x0B => Ok(Step::Touch(Pending::Selection)),
            _ => Err(Status::INVALID_COMMAND),
        }
    }

    /// Complete a request after the touch.
    pub(crate) fn finish(&mut self, pending: Pending) -> Result<Vec<u8>, Status> {
        match pending {
            Pending::Selection => Ok(Vec::new()),
            Pending::Reset => {
                self.reset()?;
                Ok(Vec::new())
            }
            Pending::MakeCredential { excluded: true, .. } => Err(Status::CREDENTIAL_EXCLUDED),
            Pending::MakeCredential { rp_id_hash, client_data_hash, uv, cred_protect, excluded: false } => {
                self.new_credential(rp_id_hash, &client_data_hash, uv, cred_protect)
            }
            Pending::GetAssertion { rp_id_hash, client_data_hash, uv, up, id, key } => {
                let counter = self.next_counter()?;
                let flags = if up { UP } else { 0 } | if uv { UV } else { 0 };
                let mut auth_data = rp_id_hash.to_vec();
                auth_data.push(flags);
                auth_data.extend_from_slice(&counter.to_be_bytes());
                let signature: DerSignature = key.sign(&[auth_data.as_slice(), &client_data_hash].concat());
                let credential =
                    text_map([("id", Value::Bytes(id)), ("type", Value::Text("public-key".into()))]);
                encode(&map([
                    (1, credential),
                    (2, Value::Bytes(auth_data)),
                    (3, Value::Bytes(signature.as_bytes().to_vec())),
                ]))
            }
        }
    }

    fn get_info(&self) -> Result<Vec<u8>, Status> {
        let text = |s: &str| Value::Text(s.to_owned());
        let options = text_map([
            ("rk", Value::Bool(false)),
            ("up", Value::Bool(true)),
            ("plat", Value::Bool(false)),
            ("clientPin", Value::Bool(self.pin_hash.is_some())),
            ("pinUvAuthToken", Value::Bool(true)),
        ]);
        encode(&map([
            (0x01, Value::Array(vec![text("FIDO_2_0"), text("FIDO_2_1")])),
            (0x02, Value::Array(vec![text("credProtect")])),
            (0x03, Value::Bytes(crate::aaguid().as_bytes().to_vec())),
            (0x04, options),
            (0x05, Value::Integer(1200)),
            (0x06, Value::Array(vec![Value::Integer(2)])),
            (0x09, Value::Array(vec![text("usb")])),
            (0x0E, Value::Integer(1)),
        ]))
    }

    /// Check pinUvAuthParam over the client data hash; `Ok(true)` when the user is
    /// verified, `Ok(false)` when no PIN/UV auth was offered.
    fn check_uv(&mut self, p: &Params, cdh: &[u8], rp_id: &str, permission: u64) -> Result<bool, Status> {
        let Some(param) = p.bytes(if permission == PERMISSION_MC { 8 } else { 6 })? else { return Ok(false) };
        let protocol = p.uint(if permission == PERMISSION_MC { 9 } else { 7 })?;
        if param.is_empty() {
            // CTAP 2.0 "touch to select": the answer follows the touch.
            return Err(if self.pin_hash.is_some() { Status::PIN_INVALID } else { Status::PIN_NOT_SET });
        }
        if protocol != Some(2) {
            return Err(Status::INVALID_PARAMETER);
        }
        let token = self.pin_token.as_mut().ok_or(Status::PIN_AUTH_INVALID)?;
        if !verify_hmac(&token.value, cdh, param) {
            return Err(Status::PIN_AUTH_INVALID);
        }
        if token.permissions & permission == 0 {
            return Err(Status::UNAUTHORIZED_PERMISSION);
        }
        match &token.rp_id {
            Some(bound) if bound != rp_id => return Err(Status::UNAUTHORIZED_PERMISSION),
            Some(_) => {}
            None => token.rp_id = Some(rp_id.to_owned()),
        }
        Ok(true)
    }

    fn make_credential(&mut self, p: &Params) -> Result<Step, Status> {
        let cdh = p.need_bytes(1)?.to_vec();
        let Some(Value::Map(rp)) = p.get(2) else { return Err(Status::MISSING_PARAMETER) };
        let Some(Value::Text(rp_id)) = rp.get(&Value::Text("id".into())) else {
            return Err(Status::MISSING_PARAMETER);
        };
        let rp_id = rp_id.clone();
        if !matches!(p.get(3), Some(Value::Map(_))) {
            return Err(Status::MISSING_PARAMETER);
        }
        let Some(Value::Array(algs)) = p.get(4) else { return Err(Status::MISSING_PARAMETER) };
        let es256 = algs.iter().any(|a| {
            matches!(a, Value::Map(m) if m.get(&Value::Text("alg".into())) == Some(&Value::Integer(ES256))
                && m.get(&Value::Text("type".into())) == Some(&Value::Text("public-key".into())))
        });
        let uv = self.check_uv(p, &cdh, &rp_id, PERMISSION_MC)?;
        if !es256 {
            return Err(Status::UNSUPPORTED_ALGORITHM);
        }
        match p.options(7)? {
            [Some(false), _, _] => return Err(Status::INVALID_OPTION),
            [_, Some(true), _] | [_, _, Some(true)] => return Err(Status::UNSUPPORTED_OPTION),
            _ => {}
        }
        if self.pin_hash.is_some() && !uv {
            return Err(Status::PUAT_REQUIRED);
        }
        let rp_id_hash: [u8; 32] = Sha256::digest(rp_id.as_bytes()).into();
        let excluded = match p.get(5) {
            Some(Value::Array(list)) => list.iter().any(|d| match d {
                Value::Map(m) => match m.get(&Value::Text("id".into())) {
                    Some(Value::Bytes(id)) => self.open_credential(&rp_id_hash, id).is_some(),
                    _ => false,
                },
                _ => false,
            }),
            _ => false,
        };
        let cred_protect = match p.get(6) {
            Some(Value::Map(ext)) => match ext.get(&Value::Text("credProtect".into())) {
                Some(Value::Integer(n @ 1..=3)) => u8::try_from(*n).ok(),
                Some(_) => return Err(Status::INVALID_PARAMETER),
                None => None,
            },
            _ => None,
        };
        let cred_protect = if self.drops_cred_protect { None } else { cred_protect };
        Ok(Step::Touch(Pending::MakeCredential {
            rp_id_hash,
            client_data_hash: cdh,
            uv,
            cred_protect,
            excluded,
        }))
    }

    fn new_credential(
        &mut self,
        rp_id_hash: [u8; 32],
        cdh: &[u8],
        uv: bool,
        cred_protect: Option<u8>,
    ) -> Result<Vec<u8>, Status> {
        let nonce = crate::random::<32>()?;
        let level = cred_protect.unwrap_or(1);
        let id = self.credential_id(&rp_id_hash, level, &nonce);
        let key = self.credential_key(&rp_id_hash, &nonce)?;
        let counter = self.next_counter()?;

        let point = key.verifying_key().to_sec1_point(false);
        let coord = |c: Option<&[u8]>| Value::Bytes(c.map(<[u8]>::to_vec).unwrap_or_default());
        let cose = map([
            (1, Value::Integer(2)),
            (3, Value::Integer(ES256)),
            (-1, Value::Integer(1)),
            (-2, coord(point.x().map(|x| &x[..]))),
            (-3, coord(point.y().map(|y| &y[..]))),
        ]);
        let flags = UP | AT | if uv { UV } else { 0 } | if cred_protect.is_some() { ED } else { 0 };
        let mut auth_data = rp_id_hash.to_vec();
        auth_data.push(flags);
        auth_data.extend_from_slice(&counter.to_be_bytes());
        auth_data.extend_from_slice(crate::aaguid().as_bytes());
        let id_len = u16::try_from(id.len()).map_err(|_| Status::OTHER)?;
        auth_data.extend_from_slice(&id_len.to_be_bytes());
        auth_data.extend_from_slice(&id);
        auth_data.extend_from_slice(&encode(&cose)?);
        if let Some(level) = cred_protect {
            auth_data.extend_from_slice(&encode(&text_map([("credProtect", Value::Integer(level.into()))]))?);
        }

        let attestation = crate::attestation::attestation().map_err(|_| Status::OTHER)?;
        let signature: DerSignature = attestation.key.sign(&[auth_data.as_slice(), cdh].concat());
        let statement = text_map([
            ("alg", Value::Integer(ES256)),
            ("sig", Value::Bytes(signature.as_bytes().to_vec())),
            ("x5c", Value::Array(vec![Value::Bytes(attestation.leaf_der)])),
        ]);
        encode(&map([(1, Value::Text("packed".into())), (2, Value::Bytes(auth_data)), (3, statement)]))
    }

    fn get_assertion(&mut self, p: &Params) -> Result<Step, Status> {
        let rp_id = p.text(1)?.ok_or(Status::MISSING_PARAMETER)?.to_owned();
        let cdh = p.need_bytes(2)?.to_vec();
        let uv = self.check_uv(p, &cdh, &rp_id, PERMISSION_GA)?;
        let up = match p.options(5)? {
            [_, Some(true), _] | [_, _, Some(_)] => return Err(Status::UNSUPPORTED_OPTION),
            [up, _, _] => up.unwrap_or(true),
        };
        let rp_id_hash: [u8; 32] = Sha256::digest(rp_id.as_bytes()).into();
        let Some(Value::Array(allow)) = p.get(3) else {
            // No discoverable credentials on this key.
            return Err(Status::NO_CREDENTIALS);
        };
        let found = allow.iter().find_map(|d| {
            let Value::Map(m) = d else { return None };
            let Some(Value::Bytes(id)) = m.get(&Value::Text("id".into())) else { return None };
            let (level, key) = self.open_credential(&rp_id_hash, id)?;
            // credProtect userVerificationRequired: invisible without UV.
            (level < 3 || uv).then(|| (id.clone(), key))
        });
        let (id, key) = found.ok_or(Status::NO_CREDENTIALS)?;
        let pending = Pending::GetAssertion { rp_id_hash, client_data_hash: cdh, uv, up, id, key };
        if up { Ok(Step::Touch(pending)) } else { self.finish(pending).map(Step::Done) }
    }

    fn client_pin(&mut self, p: &Params) -> Result<Vec<u8>, Status> {
        let sub = p.uint(2)?.ok_or(Status::MISSING_PARAMETER)?;
        if p.uint(1)?.is_some_and(|v| v != 2) || (sub != 0x01 && p.uint(1)? != Some(2)) {
            return Err(Status::INVALID_PARAMETER);
        }
        match sub {
            0x01 => encode(&map([(3, Value::Integer(self.pin_retries.into())), (4, Value::Bool(false))])),
            0x02 => encode(&map([(1, self.key_agreement.public_cose())])),
            0x03 => {
                if self.pin_hash.is_some() {
                    return Err(Status::NOT_ALLOWED);
                }
                let shared = self.key_agreement.shared_secret(p.get(3))?;
                let new_pin_enc = p.need_bytes(5)?;
                if !shared.verify(new_pin_enc, p.need_bytes(4)?) {
                    return Err(Status::PIN_AUTH_INVALID);
                }
                let padded = shared.decrypt(new_pin_enc)?;
                if padded.len() < 64 {
                    return Err(Status::PIN_POLICY_VIOLATION);
                }
                let pin = padded.split(|b| *b == 0).next().unwrap_or_default();
                let chars =
                    std::str::from_utf8(pin).map_err(|_| Status::PIN_POLICY_VIOLATION)?.chars().count();
                if !(4..=63).contains(&chars) {
                    return Err(Status::PIN_POLICY_VIOLATION);
                }
                self.pin_hash = Some(left16(pin));
                self.pin_retries = PIN_RETRIES;
                self.save()?;
                Ok(Vec::new())
            }
            0x05 | 0x09 => self.get_pin_token(p, sub == 0x09),
            _ => Err(Status::INVALID_SUBCOMMAND),
        }
    }

    fn get_pin_token(&mut self, p: &Params, with_permissions: bool) -> Result<Vec<u8>, Status> {
        let (permissions, rp_id) = if with_permissions {
            let permissions = p.uint(9)?.ok_or(Status::MISSING_PARAMETER)?;
            if permissions == 0 {
                return Err(Status::INVALID_PARAMETER);
            }
            if permissions & !(PERMISSION_MC | PERMISSION_GA) != 0 {
                return Err(Status::UNAUTHORIZED_PERMISSION);
            }
            (permissions, p.text(0x0A)?.map(str::to_owned))
        } else {
            (PERMISSION_MC | PERMISSION_GA, None)
        };
        let stored = self.pin_hash.ok_or(Status::PIN_NOT_SET)?;
        if self.pin_retries == 0 {
            return Err(Status::PIN_BLOCKED);
        }
        if self.mismatches >= MISMATCHES_PER_POWER_UP {
            return Err(Status::PIN_AUTH_BLOCKED);
        }
        let shared = self.key_agreement.shared_secret(p.get(3))?;
        let pin_hash_enc = p.need_bytes(6)?;
        // Spend the retry before checking, as a real key does: pulling the key out
        // mid-check must not give a free guess.
        self.pin_retries -= 1;
        self.save()?;
        let offered = shared.decrypt(pin_hash_enc)?;
        if !constant_time_eq(&offered, &stored) {
            self.key_agreement = KeyAgreement::generate()?;
            self.mismatches += 1;
            return Err(if self.pin_retries == 0 {
                Status::PIN_BLOCKED
            } else if self.mismatches >= MISMATCHES_PER_POWER_UP {
                Status::PIN_AUTH_BLOCKED
            } else {
                Status::PIN_INVALID
            });
        }
        self.pin_retries = PIN_RETRIES;
        self.mismatches = 0;
        self.save()?;
        let value = crate::random::<32>()?;
        self.pin_token = Some(PinToken { value, permissions, rp_id });
        encode(&map([(2, Value::Bytes(shared.encrypt(&value)?))]))
    }
}

/// `LEFT(SHA-256(pin), 16)`.
pub(crate) fn left16(pin: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&Sha256::digest(pin)[..16]);
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
