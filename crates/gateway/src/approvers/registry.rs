//! Who may decide now (the roster) and the approver registry signed for settlement.

use countersign_core::Timestamp;
use countersign_core::certificate::{Registry, RegistryApprover, RegistryCredential, SignedRegistry};
use countersign_core::operation::Role;
use countersign_core::quorum::Roster;

use crate::AppState;
use crate::error::{Error, Result};

use super::software_authenticator;

/// Every approver with their roles, groups and keys, for admins.
///
/// # Errors
/// Store errors.
pub async fn people(state: &AppState) -> Result<Vec<serde_json::Value>> {
    let everyone = state.store.approvers().await?;
    let mut out = Vec::with_capacity(everyone.len());
    for person in everyone {
        let keys = state.store.credential_listing(&person.id).await?;
        let credentials: Vec<_> = keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "id": k.id,
                    "label": k.label,
                    "aaguid": k.aaguid,
                    "software": software_authenticator(k.aaguid.as_deref()),
                    "status": k.status,
                })
            })
            .collect();
        out.push(serde_json::json!({
            "id": person.id,
            "display_name": person.display_name,
            "roles": person.roles,
            "groups": person.groups,
            "revoked": person.revoked_at.is_some(),
            "credentials": credentials,
        }));
    }
    Ok(out)
}

/// The current roster (active approvers with at least one active key) and registry.
pub(super) async fn roster(state: &AppState) -> Result<(Roster, Vec<RegistryApprover>)> {
    let mut roster = Roster::new();
    let mut registry = Vec::new();
    for (person, creds) in state.store.people_with_active_keys().await? {
        if person.roles.contains(&Role::Approver) {
            roster.add(person.id.clone(), person.groups.iter().cloned());
        }
        registry.push(RegistryApprover {
            id: person.id.clone(),
            roles: person.roles.clone(),
            groups: person.groups.clone(),
            credentials: creds
                .into_iter()
                .map(|c| RegistryCredential {
                    credential_id: c.id,
                    algorithm: "es256".into(),
                    public_key: c.public_key,
                })
                .collect(),
        });
    }
    Ok((roster, registry))
}

/// The approver registry, signed by the gateway key, for settlement.
///
/// # Errors
/// Store errors.
pub async fn registry(state: &AppState, now: Timestamp) -> Result<SignedRegistry> {
    let (_, approvers) = roster(state).await?;
    let registry = Registry {
        version: 1,
        rp_id: state.config.webauthn.rp_id.clone(),
        origins: vec![state.config.webauthn.origin.clone()],
        issued_at: now,
        approvers,
    };
    SignedRegistry::sign(registry, state.keys.signing_key()).map_err(Error::internal)
}

/// [`registry`], built again only when the audit chain moved since the last one
/// was built: every change to people and keys is audited, so the same head means
/// the same registry. Unauthenticated callers cannot make the gateway query and
/// sign per call.
///
/// # Errors
/// Store errors.
pub async fn registry_cached(state: &AppState, now: Timestamp) -> Result<SignedRegistry> {
    let mut cache = state.registry_cache.lock().await;
    let head = state.store.audit_head().await?;
    if let Some((at, registry)) = cache.as_ref()
        && *at == head
    {
        return Ok(registry.clone());
    }
    let fresh = registry(state, now).await?;
    *cache = Some((head, fresh.clone()));
    Ok(fresh)
}
