//! The authority chain on the gateway (protocol §15): the genesis drafted from the
//! tables and sealed by every key it lists, a link appended in the transaction that
//! releases an administrative operation, and the verified copy of the chain that
//! releases name their head from and are checked against before they leave.
//!
//! The rows are a cache of signed documents. The gateway verifies them from the
//! genesis hash it pins (`genesis` in the configuration, else the stored one) and
//! refuses to release what the chain does not support: its own tables are not
//! trusted to say who may approve.

use countersign_core::Timestamp;
use countersign_core::authority::{
    ApiKeyGrant, Authority, AuthorityDocument, GENESIS_NAME, Genesis, Head, Link, Person, RelyingParty,
    SignedGenesis, State,
};
use countersign_core::certificate::{CertifiedApproval, RegistryCredential, verify_bound_assertion};
use countersign_core::id::ApproverId;
use countersign_core::operation::Action;
use countersign_core::{Decision, Digest};
use serde::Serialize;
use sqlx::AnyConnection;

use crate::AppState;
use crate::error::{Error, Result};
use crate::store::{AuditEvent, GenesisRow, OperationRecord};

/// The genesis as its signers see it: what it says, who signed, who has yet to.
#[derive(Debug, Clone, Serialize)]
pub struct GenesisStatus {
    pub genesis: Genesis,
    /// Its hash, hex: what settlement pins.
    pub hash: String,
    /// Every key it lists has signed it.
    pub sealed: bool,
    /// `(person, credential)` of each key still to sign.
    pub missing: Vec<(ApproverId, String)>,
}

fn conflict(code: &'static str, message: impl Into<String>) -> Error {
    Error::conflict(code, message)
}

/// The genesis the tables describe now: everyone with an active key, the policy in
/// force, the relying party, the API keys not revoked and the allowlist.
///
/// # Errors
/// Store errors.
pub async fn from_tables(state: &AppState, now: Timestamp) -> Result<Genesis> {
    let people = state
        .store
        .people_with_active_keys()
        .await?
        .into_iter()
        .map(|(p, keys)| Person {
            id: p.id,
            display_name: p.display_name,
            roles: p.roles,
            groups: p.groups,
            keys: keys
                .into_iter()
                .map(|k| RegistryCredential {
                    credential_id: k.id,
                    algorithm: "es256".into(),
                    public_key: k.public_key,
                })
                .collect(),
        })
        .collect();
    let api_keys = state
        .store
        .api_keys()
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| ApiKeyGrant {
            key_id: k.id,
            owner: k.owner,
            algorithm: k.algorithm,
            public_key: k.public_key,
            scopes: k.scopes,
        })
        .collect();
    Ok(Genesis {
        version: 1,
        rp: RelyingParty {
            id: state.config.webauthn.rp_id.clone(),
            origins: vec![state.config.webauthn.origin.clone()],
        },
        people,
        policy: state.store.current_policy().await?.ok_or_else(|| Error::internal("no policy stored"))?,
        api_keys,
        allowlist: state.store.allowlist_entries().await?,
        created_at: now,
    })
}

fn status(row: &GenesisRow) -> GenesisStatus {
    let signed: Vec<&str> = row.signed.signatures.iter().map(|s| s.credential_id.as_str()).collect();
    let missing = row
        .signed
        .genesis
        .people
        .iter()
        .flat_map(|p| p.keys.iter().map(move |k| (p.id.clone(), k.credential_id.clone())))
        .filter(|(_, k)| !signed.contains(&k.as_str()))
        .collect();
    GenesisStatus {
        genesis: row.signed.genesis.clone(),
        hash: row.hash.clone(),
        sealed: row.sealed_at.is_some(),
        missing,
    }
}

/// Draft the genesis from the tables (the host's `genesis` command), or show the
/// one that exists.
///
/// # Errors
/// `authority.genesis_invalid` (409) when the tables cannot found a chain (no admin
/// with an active key, an API key owned by nobody here);
/// store errors.
pub async fn draft(state: &AppState, now: Timestamp) -> Result<GenesisStatus> {
    if let Some(row) = state.store.genesis().await? {
        return Ok(status(&row));
    }
    let genesis = from_tables(state, now).await?;
    // e.g. no admin with an active key yet, or an API key owned by nobody here.
    genesis.validate().map_err(|e| conflict("authority.genesis_invalid", e.to_string()))?;
    let hash = genesis.hash().map_err(Error::internal)?.to_hex();
    let signed = SignedGenesis { genesis, signatures: vec![] };
    state.store.insert_genesis_draft(&signed, &hash, now).await?;
    state
        .store
        .audit(&AuditEvent::new("host", "authority.genesis_drafted").detail("hash", hash.as_str()), now)
        .await?;
    let row = state.store.genesis().await?.ok_or_else(|| Error::internal("the genesis draft vanished"))?;
    Ok(status(&row))
}

/// Discard an unsealed draft (the people or policy changed before everyone signed).
///
/// # Errors
/// `authority.sealed` (409) once sealed; store errors.
pub async fn reset(state: &AppState, now: Timestamp) -> Result<bool> {
    if state.store.genesis().await?.is_some_and(|g| g.sealed_at.is_some()) {
        return Err(conflict(
            "authority.sealed",
            "the genesis is sealed; only a new deployment starts another",
        ));
    }
    let done = state.store.delete_genesis_draft().await?;
    if done {
        state.store.audit(&AuditEvent::new("host", "authority.genesis_reset"), now).await?;
    }
    Ok(done)
}

/// One founding person's key signs the draft. When the last key has signed, the
/// draft is checked against the tables once more and sealed.
///
/// # Errors
/// `authority.no_genesis` (409), `authority.sealed` (409), `authority.not_listed`
/// (403), `authority.genesis_signature` (400), `authority.genesis_stale` (409).
pub async fn sign(
    state: &AppState,
    who: &ApproverId,
    mut signature: CertifiedApproval,
    now: Timestamp,
) -> Result<GenesisStatus> {
    signature.approver = who.clone();
    // Compare-and-set on the stored signatures: two signers at once both land.
    for _ in 0..5 {
        let row = state
            .store
            .genesis()
            .await?
            .ok_or_else(|| conflict("authority.no_genesis", "no genesis has been drafted"))?;
        if row.sealed_at.is_some() {
            return Err(conflict("authority.sealed", "the genesis is already sealed"));
        }
        let g = &row.signed.genesis;
        let key = g
            .people
            .iter()
            .filter(|p| &p.id == who)
            .flat_map(|p| &p.keys)
            .find(|k| k.credential_id == signature.credential_id)
            .ok_or_else(|| {
                Error::forbidden(
                    "authority.not_listed",
                    format!("the genesis lists no key {} of {who}", signature.credential_id),
                )
            })?;
        let hash = Digest::from_bytes(hex32(&row.hash)?);
        verify_bound_assertion(0, &signature, key, (&g.rp.id, &g.rp.origins), |b| {
            b.check_document(GENESIS_NAME, &hash, Decision::Approve)
        })
        .map_err(|e| Error::bad_request("authority.genesis_signature", e.to_string()))?;
        let mut signed = row.signed.clone();
        signed.signatures.retain(|s| s.credential_id != signature.credential_id);
        signed.signatures.push(signature.clone());
        let complete = status(&GenesisRow { signed: signed.clone(), ..row.clone() }).missing.is_empty();
        if complete {
            State::from_genesis(&row.hash, &signed)
                .map_err(|e| conflict("authority.genesis_invalid", e.to_string()))?;
            let mut fresh = from_tables(state, now).await?;
            fresh.created_at = g.created_at;
            if &fresh != g {
                return Err(conflict(
                    "authority.genesis_stale",
                    "people, keys, API keys, the allowlist or the policy changed since the draft: \
                     the host runs `countersign-gateway genesis --reset`, then drafts it again",
                ));
            }
        }
        if state
            .store
            .save_genesis_signatures(&row.hash, &signed, complete.then_some(now), &row.signed)
            .await?
        {
            let event = if complete { "authority.genesis_sealed" } else { "authority.genesis_signed" };
            let e = AuditEvent::new(format!("approver:{who}"), event)
                .detail("hash", row.hash.as_str())
                .detail("credential", signature.credential_id.as_str());
            state.store.audit(&e, now).await?;
            refresh(state).await?;
            let row = state.store.genesis().await?.ok_or_else(|| Error::internal("the genesis vanished"))?;
            return Ok(status(&row));
        }
    }
    Err(Error::unavailable("the genesis kept changing while it was signed; try again"))
}

fn hex32(s: &str) -> Result<[u8; 32]> {
    data_encoding::HEXLOWER
        .decode(s.as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| Error::internal("a stored genesis hash is not 32 bytes of hex"))
}

/// The chain verified from the pinned genesis, brought up to the stored links;
/// `None` before a genesis is sealed.
///
/// # Errors
/// `authority.genesis_mismatch` when the stored genesis is not the pinned one, the
/// chain's own errors for a stored link that does not verify (fail closed), store errors.
pub async fn verified(state: &AppState) -> Result<Option<Authority>> {
    let result = verify_stored(state).await;
    let broken = &state.authority.broken;
    match &result {
        Ok(_) => broken.store(false, std::sync::atomic::Ordering::SeqCst),
        // The stored chain does not verify: release nothing until it does.
        Err(e) if e.code.starts_with("authority.") => broken.store(true, std::sync::atomic::Ordering::SeqCst),
        // The database is away: nothing new is known about the chain (a database
        // outage is not a broken chain; intake answers store.unavailable on its own).
        Err(_) => {}
    }
    result
}

async fn verify_stored(state: &AppState) -> Result<Option<Authority>> {
    let mut cache = state.authority.verified.lock().await;
    if cache.is_none() {
        let Some(row) = state.store.genesis().await?.filter(|g| g.sealed_at.is_some()) else {
            return Ok(None);
        };
        let pinned = state.config.genesis.clone().unwrap_or(row.hash);
        let authority = Authority::new(&pinned, &row.signed).map_err(refused)?;
        *cache = Some(authority);
    }
    let authority = cache.as_mut().ok_or_else(|| Error::internal("no authority"))?;
    let links = state.store.links_after(authority.head().index).await?;
    authority.extend(&links).map_err(refused)?;
    *state.authority.head.write().map_err(|_| Error::internal("authority head lock poisoned"))? =
        Some(authority.head().clone());
    Ok(Some(authority.clone()))
}

fn refused(e: countersign_core::authority::AuthorityError) -> Error {
    tracing::error!(code = e.code(), error = %e, "the stored authority chain does not verify");
    Error::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        e.code(),
        format!("the authority chain does not verify: {e}"),
    )
}

/// Bring the cached head up to date (at start, after a link, in the sweep).
///
/// # Errors
/// As [`verified`].
pub async fn refresh(state: &AppState) -> Result<()> {
    verified(state).await.map(|_| ())
}

/// The newest verified head, without waiting (intake names it in releases).
///
/// # Errors
/// `authority.unverified` (503) while the stored chain does not verify: nothing is
/// released then, not even what the policy allows without approval.
pub fn head(state: &AppState) -> Result<Option<Head>> {
    if state.authority.broken.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Error::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "authority.unverified",
            "the authority chain this gateway stores does not verify: nothing is released until it does",
        ));
    }
    Ok(state.authority.head.read().ok().and_then(|h| h.clone()))
}

/// Whether a genesis exists, drafted or sealed: from then on the host grants no power.
///
/// # Errors
/// `authority.host_refused` (409) naming what to do instead.
pub async fn host_may_grant(state: &AppState, what: &str) -> Result<()> {
    match state.store.genesis().await? {
        None => Ok(()),
        Some(_) => Err(conflict(
            "authority.host_refused",
            format!(
                "a genesis exists: {what} is an administrative operation the admins approve with their keys \
                 (propose it from the desktop or `countersign admin propose`); the host only freezes"
            ),
        )),
    }
}

/// The whole chain for settlement, clients and the checker; `None` before genesis.
///
/// # Errors
/// Store errors.
pub async fn document(state: &AppState) -> Result<Option<AuthorityDocument>> {
    let Some(row) = state.store.genesis().await?.filter(|g| g.sealed_at.is_some()) else {
        return Ok(None);
    };
    Ok(Some(AuthorityDocument { genesis: row.signed, links: state.store.links_after(0).await? }))
}

/// What a link carries besides the operation: the counted approvals, and for a
/// further key of a person who holds keys, that person's own approval.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    pub approvals: &'a [CertifiedApproval],
    pub consent: Option<&'a CertifiedApproval>,
}

/// Append the link for an administrative operation being released, in the
/// releasing transaction: `authority` is the chain verified before the transaction
/// began; links another instance appended meanwhile are read inside it. Returns the
/// head the operation was decided under.
///
/// # Errors
/// `authority.link_refused` (409) when the chain does not accept the change (the
/// operation is not released); store errors.
pub async fn append_in(
    state: &AppState,
    tx: &mut AnyConnection,
    authority: &mut Authority,
    record: &OperationRecord,
    evidence: Evidence<'_>,
    now: Timestamp,
) -> Result<Head> {
    let newest = state.store.lock_authority_in(tx).await?;
    if newest > authority.head().index {
        let links = state.store.links_after_in(tx, authority.head().index).await?;
        authority.extend(&links).map_err(refused)?;
    }
    let decided_under = authority.head().clone();
    let (public_key, holder) = match &record.operation.action {
        Action::ApproverEnroll(e) => (
            state.store.credential_public_key_in(tx, &e.credential.credential_id).await?,
            authority.latest().people.get(&e.approver).is_some_and(|p| !p.keys.is_empty()),
        ),
        _ => (None, false),
    };
    let link = Link {
        index: decided_under.index + 1,
        prev: decided_under.hash.clone(),
        operation: String::from_utf8(countersign_core::canonical::encode(&record.operation)?)
            .map_err(Error::internal)?,
        approvals: evidence.approvals.to_vec(),
        applied_at: now.max(authority.latest().applied_at),
        public_key,
        // Only a person who holds keys consents (the chain refuses it otherwise).
        consent: evidence.consent.filter(|_| holder).cloned(),
    };
    authority.extend([&link]).map_err(|e| {
        conflict("authority.link_refused", format!("the authority chain does not accept this change: {e}"))
    })?;
    let hash = link.hash().map_err(Error::internal)?.to_hex();
    state.store.insert_link_in(tx, &link, &hash, record.operation.id.as_str(), now).await?;
    Ok(decided_under)
}

/// The checker's rules for the chain (`countersign-gateway check`): the chain
/// verifies from the pinned genesis, and every active credential, role, group, the
/// policy, every API key and allowlist entry in the tables is one the chain
/// produced. Returns `(rule, subject, detail)` per finding; nothing before genesis.
///
/// # Errors
/// Store errors.
pub async fn check_tables(state: &AppState) -> Result<Vec<(&'static str, String, String)>> {
    let mut found = Vec::new();
    let Some(doc) = document(state).await? else {
        return Ok(found);
    };
    let pinned = match (&state.config.genesis, state.store.genesis().await?) {
        (Some(pin), _) => pin.clone(),
        (None, Some(row)) => row.hash,
        (None, None) => return Ok(found),
    };
    let chain = match Authority::from_document(&pinned, &doc) {
        Ok(chain) => chain,
        Err(e) => {
            found.push(("authority.chain", e.code().to_owned(), e.to_string()));
            return Ok(found);
        }
    };
    let at = chain.latest();
    for (person, keys) in state.store.people_with_active_keys().await? {
        let Some(listed) = at.people.get(&person.id) else {
            found.push((
                "authority.person",
                person.id.to_string(),
                "an active person the chain does not list".into(),
            ));
            continue;
        };
        if listed.roles != person.roles || listed.groups != person.groups {
            found.push((
                "authority.person",
                person.id.to_string(),
                format!(
                    "roles {:?} and groups {:?} in the tables, {:?} and {:?} in the chain",
                    person.roles, person.groups, listed.roles, listed.groups
                ),
            ));
        }
        for k in keys {
            if !listed.keys.iter().any(|c| c.credential_id == k.id && c.public_key == k.public_key) {
                found.push((
                    "authority.credential",
                    format!("{}/{}", person.id, k.id),
                    "an active key the chain does not produce for this person".into(),
                ));
            }
        }
    }
    if let Some(policy) = state.store.current_policy().await?
        && &policy != at.policy()
    {
        found.push((
            "authority.policy",
            format!("version {}", policy.version),
            format!("the policy in force is not the chain's (version {})", at.policy().version),
        ));
    }
    for k in state.store.api_keys().await?.into_iter().filter(|k| k.revoked_at.is_none()) {
        let same = at.api_keys.get(&k.id).is_some_and(|g| g.owner == k.owner && g.public_key == k.public_key);
        if !same {
            found.push(("authority.api_key", k.id.to_string(), "an API key the chain does not list".into()));
        }
    }
    for e in state.store.allowlist_entries().await? {
        let listed = at
            .allowlist
            .iter()
            .any(|x| x.account == e.account && x.network == e.network && x.destination == e.destination);
        if !listed {
            found.push((
                "authority.allowlist",
                format!("{}/{}/{}", e.account, e.network, e.destination.address),
                "an allowlisted destination the chain does not list".into(),
            ));
        }
    }
    Ok(found)
}
