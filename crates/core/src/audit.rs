//! The audit chain: an append-only list of security events, each hashing its
//! predecessor, with checkpoints signed by the gateway's Ed25519 key.
//!
//! ```text
//! hash(entry)      = SHA-256("countersign:audit:v1" || 0x00 || JCS(entry without "hash"))
//! entry.prev       = hash of the previous entry (64 zeros before the first)
//! checkpoint sig   = Ed25519(gateway key, "countersign:checkpoint:v1" || 0x00 || JCS(checkpoint))
//! ```
//!
//! [`verify_export`] checks an exported chain offline and names the first entry
//! that does not verify.

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::timestamp::Timestamp;

/// Domain prefix of entry hashes.
pub const ENTRY_DOMAIN: &[u8] = b"countersign:audit:v1";
/// Domain prefix of checkpoint signatures.
pub const CHECKPOINT_DOMAIN: &[u8] = b"countersign:checkpoint:v1";
/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One event, before it is hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When it happened.
    pub time: Timestamp,
    /// Who caused it: `api_key:<id>`, `approver:<id>`, `host` (gateway CLI), `gateway`.
    pub actor: String,
    /// What happened, e.g. `operation.pending`, `auth.bad_signature`.
    pub event: String,
    /// The operation concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Its canonical digest (hex), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Event details: a JSON object of strings, integers and booleans only.
    pub details: Map<String, Value>,
    /// Hash of the previous entry, hex.
    pub prev: String,
}

impl AuditEntry {
    /// The entry's hash, hex.
    ///
    /// # Errors
    /// [`AuditError::Encoding`] when `details` holds something JCS cannot write.
    pub fn hash(&self) -> Result<String, AuditError> {
        let jcs = serde_json_canonicalizer::to_vec(self).map_err(|e| AuditError::Encoding(e.to_string()))?;
        let mut h = Sha256::new();
        h.update(ENTRY_DOMAIN);
        h.update([0u8]);
        h.update(&jcs);
        Ok(HEXLOWER.encode(&h.finalize()))
    }
}

/// A stored entry: the entry and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashedEntry {
    pub entry: AuditEntry,
    /// `entry.hash()`.
    pub hash: String,
}

/// A signed statement "the chain up to `seq` ends in `hash`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Last entry covered.
    pub seq: u64,
    pub hash: String,
    /// When it was signed.
    pub time: Timestamp,
}

/// A checkpoint with the gateway's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// What is signed.
    pub checkpoint: Checkpoint,
    /// The gateway's Ed25519 public key, base64url.
    pub key: String,
    /// Ed25519 signature, base64url.
    pub signature: String,
}

fn checkpoint_message(c: &Checkpoint) -> Result<Vec<u8>, AuditError> {
    let jcs = serde_json_canonicalizer::to_vec(c).map_err(|e| AuditError::Encoding(e.to_string()))?;
    let mut msg = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 1 + jcs.len());
    msg.extend_from_slice(CHECKPOINT_DOMAIN);
    msg.push(0);
    msg.extend_from_slice(&jcs);
    Ok(msg)
}

impl SignedCheckpoint {
    /// Sign a checkpoint.
    ///
    /// # Errors
    /// [`AuditError::Encoding`] (not expected for valid checkpoints).
    pub fn sign(checkpoint: Checkpoint, key: &SigningKey) -> Result<Self, AuditError> {
        let sig = key.sign(&checkpoint_message(&checkpoint)?);
        Ok(SignedCheckpoint {
            key: BASE64URL_NOPAD.encode(key.verifying_key().as_bytes()),
            signature: BASE64URL_NOPAD.encode(&sig.to_bytes()),
            checkpoint,
        })
    }

    /// Verify the signature with `expected_key` (the gateway key the verifier trusts).
    ///
    /// # Errors
    /// [`AuditError::BadCheckpoint`] for a foreign key or a bad signature.
    pub fn verify(&self, expected_key: &VerifyingKey) -> Result<(), AuditError> {
        let bad = |why: &str| AuditError::BadCheckpoint { seq: self.checkpoint.seq, reason: why.to_owned() };
        if self.key != BASE64URL_NOPAD.encode(expected_key.as_bytes()) {
            return Err(bad("signed by another key"));
        }
        let sig = BASE64URL_NOPAD
            .decode(self.signature.as_bytes())
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or_else(|| bad("signature is not 64 bytes of base64url"))?;
        expected_key
            .verify_strict(&checkpoint_message(&self.checkpoint)?, &sig)
            .map_err(|_| bad("signature does not verify"))
    }
}

/// One line of an export (JSON lines): an entry or a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExportLine {
    /// A signed checkpoint.
    Checkpoint(SignedCheckpoint),
    /// An entry with its hash.
    Entry(HashedEntry),
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints whose signature and hash matched.
    pub checkpoints: u64,
    /// Hash of the last entry.
    pub head: String,
    /// Entries after the last checkpoint (not yet covered by a signature).
    pub unsigned_tail: u64,
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// A line is not JSON of either shape.
    #[error("line {line}: not an audit entry or checkpoint: {reason}")]
    Unreadable {
        /// 1-based line number.
        line: usize,
        /// Parser message.
        reason: String,
    },
    /// An entry is out of sequence (gap, repeat, reorder).
    #[error("entry {seq}: expected sequence number {expected}")]
    Sequence {
        /// The entry's seq.
        seq: u64,
        /// What it should have been.
        expected: u64,
    },
    /// An entry's `prev` is not the previous entry's hash.
    #[error("entry {seq}: prev does not match the hash of entry {}", seq.saturating_sub(1))]
    BrokenLink {
        /// The entry's seq.
        seq: u64,
    },
    /// An entry's stored hash is not the hash of its content (it was edited).
    #[error("entry {seq}: content does not match its hash (edited)")]
    Tampered {
        /// The entry's seq.
        seq: u64,
    },
    /// A checkpoint's signature or hash is wrong.
    #[error("checkpoint at entry {seq}: {reason}")]
    BadCheckpoint {
        /// The checkpoint's seq.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// An entry cannot be encoded.
    #[error("cannot encode: {0}")]
    Encoding(String),
}

impl AuditError {
    /// The sequence number of the first broken entry, where there is one.
    #[must_use]
    pub fn first_broken_seq(&self) -> Option<u64> {
        match self {
            Self::Sequence { seq, .. }
            | Self::BrokenLink { seq }
            | Self::Tampered { seq }
            | Self::BadCheckpoint { seq, .. } => Some(*seq),
            Self::Unreadable { .. } | Self::Encoding(_) => None,
        }
    }
}

/// Verify an export (JSON lines, entries in order from seq 1, checkpoints anywhere
/// after the entry they cover) against the gateway's public key.
///
/// # Errors
/// The first problem found, naming the entry.
pub fn verify_export(jsonl: &str, gateway_key: &VerifyingKey) -> Result<ChainSummary, AuditError> {
    let mut hashes: Vec<String> = Vec::new();
    let mut checkpoints = 0u64;
    let mut last_checkpoint = 0u64;
    for (i, line) in jsonl.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed: ExportLine = serde_json::from_str(line)
            .map_err(|e| AuditError::Unreadable { line: i + 1, reason: e.to_string() })?;
        match parsed {
            ExportLine::Entry(HashedEntry { entry, hash }) => {
                let expected = hashes.len() as u64 + 1;
                if entry.seq != expected {
                    return Err(AuditError::Sequence { seq: entry.seq, expected });
                }
                let prev = hashes.last().map_or(GENESIS, String::as_str);
                if entry.prev != prev {
                    return Err(AuditError::BrokenLink { seq: entry.seq });
                }
                if entry.hash()? != hash {
                    return Err(AuditError::Tampered { seq: entry.seq });
                }
                hashes.push(hash);
            }
            ExportLine::Checkpoint(cp) => {
                cp.verify(gateway_key)?;
                let seq = cp.checkpoint.seq;
                let covered =
                    usize::try_from(seq).ok().and_then(|s| s.checked_sub(1)).and_then(|i| hashes.get(i));
                match covered {
                    Some(h) if *h == cp.checkpoint.hash => {}
                    Some(_) => {
                        return Err(AuditError::BadCheckpoint {
                            seq,
                            reason: "hash differs from the chain".into(),
                        });
                    }
                    None => {
                        return Err(AuditError::BadCheckpoint {
                            seq,
                            reason: "covers entries not (yet) in the export".into(),
                        });
                    }
                }
                checkpoints += 1;
                last_checkpoint = last_checkpoint.max(seq);
            }
        }
    }
    let entries = hashes.len() as u64;
    Ok(ChainSummary {
        entries,
        checkpoints,
        head: hashes.last().cloned().unwrap_or_else(|| GENESIS.to_owned()),
        unsigned_tail: entries - last_checkpoint.min(entries),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<HashedEntry> {
        let mut out: Vec<HashedEntry> = Vec::new();
        for seq in 1..=n {
            let mut details = Map::new();
            details.insert("n".into(), Value::from(seq));
            let entry = AuditEntry {
                seq,
                time: Timestamp::from_unix(1_795_894_974 + seq as i64).unwrap(),
                actor: "api_key:key_mm1".into(),
                event: "operation.received".into(),
                operation: Some(format!("op_{seq}")),
                digest: None,
                details,
                prev: out.last().map_or(GENESIS.to_owned(), |e| e.hash.clone()),
            };
            let hash = entry.hash().unwrap();
            out.push(HashedEntry { entry, hash });
        }
        out
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn export(entries: &[HashedEntry], checkpoint_at: Option<u64>) -> String {
        let mut lines: Vec<String> = entries.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
        if let Some(seq) = checkpoint_at {
            let cp = Checkpoint {
                seq,
                hash: entries[seq as usize - 1].hash.clone(),
                time: Timestamp::from_unix(1_795_900_000).unwrap(),
            };
            lines.insert(
                seq as usize,
                serde_json::to_string(&SignedCheckpoint::sign(cp, &key()).unwrap()).unwrap(),
            );
        }
        lines.join("\n")
    }

    #[test]
    fn an_intact_chain_verifies() {
        let s = verify_export(&export(&chain(5), Some(3)), &key().verifying_key()).unwrap();
        assert_eq!((s.entries, s.checkpoints, s.unsigned_tail), (5, 1, 2));
        assert_eq!(s.head, chain(5)[4].hash);
    }

    #[test]
    fn edited_entry_is_named() {
        let mut c = chain(5);
        c[2].entry.actor = "host".into();
        assert_eq!(
            verify_export(&export(&c, None), &key().verifying_key()),
            Err(AuditError::Tampered { seq: 3 })
        );
    }

    #[test]
    fn rehashed_edit_breaks_the_next_link() {
        let mut c = chain(5);
        c[2].entry.event = "operation.released".into();
        c[2].hash = c[2].entry.hash().unwrap();
        assert_eq!(
            verify_export(&export(&c, None), &key().verifying_key()),
            Err(AuditError::BrokenLink { seq: 4 })
        );
    }

    #[test]
    fn removed_or_reordered_entries_are_named() {
        let mut c = chain(5);
        c.remove(1);
        let err = verify_export(&export(&c, None), &key().verifying_key()).unwrap_err();
        assert_eq!(err, AuditError::Sequence { seq: 3, expected: 2 });
        assert_eq!(err.first_broken_seq(), Some(3));
    }

    #[test]
    fn a_rewritten_tail_fails_the_checkpoint() {
        // An attacker with database access rewrites entries 2..5 consistently; the
        // signed checkpoint at 3 no longer matches.
        let good = chain(5);
        let cp_line = export(&good, Some(3)).lines().nth(3).unwrap().to_owned();
        let mut forged = chain(1);
        for seq in 2..=5u64 {
            let entry = AuditEntry {
                seq,
                time: Timestamp::from_unix(1).unwrap(),
                actor: "host".into(),
                event: "nothing.happened".into(),
                operation: None,
                digest: None,
                details: Map::new(),
                prev: forged.last().unwrap().hash.clone(),
            };
            let hash = entry.hash().unwrap();
            forged.push(HashedEntry { entry, hash });
        }
        let mut lines: Vec<String> = forged.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
        lines.insert(3, cp_line);
        let err = verify_export(&lines.join("\n"), &key().verifying_key()).unwrap_err();
        assert!(matches!(err, AuditError::BadCheckpoint { seq: 3, .. }), "{err}");
    }

    #[test]
    fn checkpoint_by_another_key_or_with_a_bad_signature_fails() {
        let other = SigningKey::from_bytes(&[9u8; 32]);
        let text = export(&chain(3), Some(2));
        let err = verify_export(&text, &other.verifying_key()).unwrap_err();
        assert!(matches!(err, AuditError::BadCheckpoint { seq: 2, .. }));
        let mut cp: SignedCheckpoint = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
        cp.checkpoint.time = Timestamp::from_unix(5).unwrap();
        assert!(cp.verify(&key().verifying_key()).is_err());
    }

    #[test]
    fn garbage_lines_are_reported_with_their_number() {
        let text = format!("{}\nnot json", export(&chain(1), None));
        assert!(matches!(
            verify_export(&text, &key().verifying_key()),
            Err(AuditError::Unreadable { line: 2, .. })
        ));
    }
}
