//! The authority chain from a client: the genesis a founding person signs with
//! their key, and the chain verified from a pinned genesis hash.

use countersign_core::authority::{Authority, AuthorityDocument, Genesis};
use countersign_keys::{Ceremony, Token};
use data_encoding::BASE64URL_NOPAD;
use serde_json::json;
use webauthn_rs_proto::{AllowCredentials, PublicKeyCredentialRequestOptions, UserVerificationPolicy};

use crate::{Client, Error, Result, Session};

/// A genesis as the client checked it: its hash is computed here, not taken from
/// the gateway.
#[derive(Debug, Clone)]
pub struct GenesisDraft {
    pub genesis: Genesis,
    /// Lowercase hex: what every founding person compares out of band and settlement pins.
    pub hash: String,
    /// Every key it lists has signed.
    pub sealed: bool,
    /// `(person, credential)` still to sign.
    pub missing: Vec<(String, String)>,
}

fn protocol(e: impl std::fmt::Display) -> Error {
    Error::Protocol(e.to_string())
}

impl Client {
    /// The genesis (draft or sealed), with its hash recomputed here.
    ///
    /// # Errors
    /// `authority.no_genesis`, [`Error::Tampered`] when the gateway's hash is not the
    /// document's, transport errors.
    pub async fn genesis(&self) -> Result<GenesisDraft> {
        let r = self.get("/v1/authority/genesis", None).await?;
        let genesis: Genesis = serde_json::from_value(r["genesis"].clone()).map_err(protocol)?;
        let hash = genesis.hash().map_err(protocol)?.to_hex();
        if r["hash"].as_str() != Some(hash.as_str()) {
            return Err(Error::Tampered(format!(
                "the gateway says the genesis hash is {}, it is {hash}",
                r["hash"]
            )));
        }
        let missing = r["missing"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|x| {
                        let s = |k: &str| x[k].as_str().unwrap_or_default().to_owned();
                        (s("approver"), s("credential_id"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(GenesisDraft { genesis, hash, sealed: r["sealed"].as_bool().unwrap_or(false), missing })
    }

    /// Sign the genesis with `approver`'s key: only if its hash is `expected` (the
    /// hash the founding people compared out of band), with the `countersign` member
    /// naming the genesis and its hash. Returns the genesis as it stands after.
    ///
    /// # Errors
    /// [`Error::Tampered`] for another genesis than `expected`; `authority.*`, key
    /// and transport errors.
    pub async fn sign_genesis<T: Token + 'static>(
        &self,
        session: &Session,
        approver: &str,
        expected: &str,
        token: T,
        ceremony: &Ceremony,
    ) -> Result<GenesisDraft> {
        let draft = self.genesis().await?;
        if draft.hash != expected.trim().to_ascii_lowercase() {
            return Err(Error::Tampered(format!(
                "the genesis on the gateway hashes to {}, not {expected}: do not sign it",
                draft.hash
            )));
        }
        let mine: Vec<AllowCredentials> = draft
            .genesis
            .people
            .iter()
            .filter(|p| p.id.as_str() == approver)
            .flat_map(|p| &p.keys)
            .filter_map(|k| BASE64URL_NOPAD.decode(k.credential_id.as_bytes()).ok())
            .map(|id| AllowCredentials { type_: "public-key".into(), id, transports: None })
            .collect();
        if mine.is_empty() {
            return Err(Error::Tampered(format!("the genesis lists no key of {approver}")));
        }
        let digest = draft.genesis.hash().map_err(protocol)?;
        let options = PublicKeyCredentialRequestOptions {
            challenge: digest.as_bytes().to_vec(),
            timeout: None,
            rp_id: draft.genesis.rp.id.clone(),
            allow_credentials: mine,
            user_verification: UserVerificationPolicy::Required,
            hints: None,
            extensions: None,
        };
        let origin = self.origin_for(&draft.genesis.rp.id).await?.to_owned();
        let binding = draft.genesis.binding().map_err(protocol)?;
        let cdj = countersign_core::binding::client_data_json(&digest.to_base64url(), &origin, &binding)
            .map_err(protocol)?;
        let credential = countersign_keys::sign(token, ceremony, options, cdj).await?;
        let body = json!({
            "credential_id": credential.id,
            "authenticator_data": BASE64URL_NOPAD.encode(credential.response.authenticator_data.as_ref()),
            "client_data_json": BASE64URL_NOPAD.encode(credential.response.client_data_json.as_ref()),
            "signature": BASE64URL_NOPAD.encode(credential.response.signature.as_ref()),
        });
        self.post("/v1/authority/genesis/signatures", Some(session), body).await?;
        self.genesis().await
    }

    /// The whole chain, as the gateway serves it (unverified: see [`Client::verified_authority`]).
    ///
    /// # Errors
    /// `authority.no_genesis`, transport errors.
    pub async fn authority(&self) -> Result<AuthorityDocument> {
        serde_json::from_value(self.get("/v1/authority", None).await?).map_err(protocol)
    }

    /// The keys recorded decisions are checked against: the registry of the
    /// authority chain's newest state, verified here from its genesis, once the
    /// gateway has one; before that, the gateway-signed registry. `None` when neither
    /// can be read or the chain does not verify (decisions then show as unchecked).
    pub(crate) async fn decision_registry(&self) -> Option<countersign_core::certificate::Registry> {
        match self.authority().await {
            Ok(doc) => {
                let genesis = match &self.genesis {
                    Some(pinned) => pinned.clone(),
                    None => doc.genesis.genesis.hash().ok()?.to_hex(),
                };
                Authority::from_document(&genesis, &doc).ok().map(|chain| chain.latest().registry())
            }
            Err(e) if e.code() == "authority.no_genesis" => {
                let signed = self.registry().await.ok()?;
                serde_json::from_value::<countersign_core::certificate::SignedRegistry>(signed)
                    .ok()
                    .map(|r| r.registry)
            }
            Err(_) => None,
        }
    }

    /// The chain verified from the genesis this client pins (the profile's), else
    /// from the one the gateway serves (which only says the chain is consistent);
    /// with the genesis hash it was verified from.
    ///
    /// # Errors
    /// As [`Client::verified_authority`].
    pub async fn pinned_authority(&self) -> Result<(Authority, bool)> {
        match &self.genesis {
            Some(pinned) => Ok((self.verified_authority(pinned).await?, true)),
            None => {
                let doc = self.authority().await?;
                let genesis = doc.genesis.genesis.hash().map_err(protocol)?.to_hex();
                let chain = Authority::from_document(&genesis, &doc)
                    .map_err(|e| Error::Tampered(format!("{}: {e}", e.code())))?;
                Ok((chain, false))
            }
        }
    }

    /// The chain verified from the pinned genesis hash.
    ///
    /// # Errors
    /// [`Error::Tampered`] when it does not verify (`authority.*` in the message).
    pub async fn verified_authority(&self, pinned: &str) -> Result<Authority> {
        let doc = self.authority().await?;
        Authority::from_document(pinned, &doc).map_err(|e| Error::Tampered(format!("{}: {e}", e.code())))
    }
}
