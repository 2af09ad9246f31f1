//! Typed calls to the gateway. Every ceremony is one call here: ask the gateway,
//! check what it says, let the key sign, send the signature.

use std::sync::Arc;

use countersign_core::Decision;
use countersign_keys::{Ceremony, Token};
use serde::Deserialize;
use serde_json::{Value, json};
use webauthn_rs_proto::{CreationChallengeResponse, RequestChallengeResponse};

use crate::transport::Transport;
use crate::{EnrollmentLink, Error, Result, VerifiedOperation};

/// A login session token. Never shown by `Debug`; store it only in the OS keyring.
#[derive(Clone, PartialEq, Eq)]
pub struct Session(String);

impl Session {
    /// Wrap a token read back from storage.
    #[must_use]
    pub fn new(token: String) -> Session {
        Session(token)
    }

    /// The token, for the `Authorization` header and the keyring only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session(<redacted>)")
    }
}

/// What a client needs to know about the gateway before signing.
#[derive(Debug, Clone, Deserialize)]
pub struct Info {
    /// The WebAuthn relying party id.
    pub rp_id: String,
    /// The origin the gateway expects in clientDataJSON.
    pub origin: String,
    /// The gateway's version.
    pub version: String,
    /// The pin of the TLS key it serves, if any.
    pub tls_pin: Option<String>,
}

/// The WebAuthn relying party a client signs for: pinned in the profile at
/// enrollment (with the TLS key), never taken from the gateway afterwards.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct RelyingParty {
    /// The relying party id (the key computes rpIdHash from it).
    pub rp_id: String,
    /// The origin written into clientDataJSON.
    pub origin: String,
}

/// A registered key.
#[derive(Debug, Clone, Deserialize)]
pub struct Enrolled {
    /// The credential id (base64url).
    pub credential_id: String,
    /// `active`, or `pending_approval` until admins approve the enrollment.
    pub status: String,
    /// Whose key it is (the approver the code was issued for).
    pub approver: String,
}

/// A decision the gateway is ready to take: the operation, verified, and the key
/// challenge. Show [`DecisionChallenge::operation`], then [`Client::sign_decision`].
#[derive(Debug, Clone)]
pub struct DecisionChallenge {
    ceremony: String,
    options: RequestChallengeResponse,
    /// What is being decided, checked against its canonical form.
    pub operation: VerifiedOperation,
    /// The decision asked for.
    pub decision: Decision,
}

/// A typed client for one gateway.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) transport: Transport,
    /// The relying party signed for: pinned from the profile, or (enrollment only)
    /// asked of the gateway once, over the pinned connection.
    relying_party: Arc<tokio::sync::OnceCell<RelyingParty>>,
    /// The authority chain's genesis hash this person pinned (from the profile).
    pub(crate) genesis: Option<String>,
}

fn decode<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Protocol(format!("{what}: {e}")))
}

fn text(v: &Value, k: &str) -> Result<String> {
    v[k].as_str().map(str::to_owned).ok_or_else(|| Error::Protocol(format!("no {k} in the answer")))
}

impl Client {
    /// A client for `base`: `https://…` with the gateway's pin, or `http://` to this
    /// machine.
    ///
    /// # Errors
    /// [`Error::Insecure`] for any other combination.
    pub fn new(base: &str, pin: Option<&str>) -> Result<Client> {
        Ok(Client { transport: Transport::new(base, pin)?, relying_party: Arc::default(), genesis: None })
    }

    /// Pin the relying party (from the profile): every ceremony whose options name
    /// another rp id is refused before the key is asked to sign
    /// ([`Error::RelyingPartyChanged`]), and clientDataJSON carries this origin.
    #[must_use]
    pub fn with_relying_party(self, relying_party: RelyingParty) -> Client {
        Client { relying_party: Arc::new(tokio::sync::OnceCell::new_with(Some(relying_party))), ..self }
    }

    /// Pin the authority chain's genesis (from the profile): decisions are checked
    /// against the chain verified from this hash, and a gateway serving another
    /// genesis is refused ([`Error::Tampered`]).
    #[must_use]
    pub fn with_genesis(self, genesis: String) -> Client {
        Client { genesis: Some(genesis), ..self }
    }

    /// A client for the gateway an enrollment link names, pinned to its key.
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn for_link(link: &EnrollmentLink) -> Result<Client> {
        Client::new(&link.gateway, link.pin.as_deref())
    }

    /// The gateway's base URL.
    #[must_use]
    pub fn base(&self) -> &str {
        &self.transport.base
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        session: Option<&Session>,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self.transport.http.request(method, format!("{}{path}", self.transport.base));
        if let Some(s) = session {
            request = request.bearer_auth(s.expose());
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let resp = request.send().await.map_err(|e| self.transport.failure(&e))?;
        if !resp.status().is_success() {
            return Err(Error::from_response(resp).await);
        }
        resp.json().await.map_err(|e| Error::Protocol(e.to_string()))
    }

    pub(crate) async fn post(&self, path: &str, session: Option<&Session>, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, session, Some(body)).await
    }

    pub(crate) async fn get(&self, path: &str, session: Option<&Session>) -> Result<Value> {
        self.call(reqwest::Method::GET, path, session, None).await
    }

    /// `GET /v1/info`.
    ///
    /// # Errors
    /// Transport and gateway errors.
    pub async fn info(&self) -> Result<Info> {
        decode(self.get("/v1/info", None).await?, "info")
    }

    /// The relying party this client signs for: the pinned one, else (at
    /// enrollment) the gateway's `/v1/info`, asked once. Save it in the profile.
    ///
    /// # Errors
    /// Transport and gateway errors.
    pub async fn relying_party(&self) -> Result<&RelyingParty> {
        self.relying_party
            .get_or_try_init(|| async {
                let info = self.info().await?;
                Ok(RelyingParty { rp_id: info.rp_id, origin: info.origin })
            })
            .await
    }

    /// The origin to sign, after checking that the ceremony is for the pinned rp id.
    pub(crate) async fn origin_for(&self, asked_rp_id: &str) -> Result<&str> {
        let rp = self.relying_party().await?;
        if rp.rp_id != asked_rp_id {
            return Err(Error::RelyingPartyChanged {
                pinned: rp.rp_id.clone(),
                asked: asked_rp_id.to_owned(),
            });
        }
        Ok(&rp.origin)
    }

    /// Enroll a key with a single-use code: the gateway's options, `makeCredential`
    /// on the key (PIN, touch), the attestation back to the gateway.
    ///
    /// # Errors
    /// `enroll.*` from the gateway, key errors, transport errors.
    pub async fn enroll<T: Token + 'static>(
        &self,
        code: &str,
        label: &str,
        token: T,
        ceremony: &Ceremony,
    ) -> Result<Enrolled> {
        let start = self.post("/v1/enroll/start", None, json!({ "code": code })).await?;
        let options: CreationChallengeResponse = decode(start["options"].clone(), "enrollment options")?;
        let origin = self.origin_for(&options.public_key.rp.id).await?;
        let credential = countersign_keys::register(token, ceremony, options.public_key, origin).await?;
        let done = self
            .post(
                "/v1/enroll/finish",
                None,
                json!({ "ceremony": text(&start, "ceremony")?, "label": label, "credential": credential }),
            )
            .await?;
        decode(done, "enrollment")
    }

    async fn assert_standard<T: Token + 'static>(
        &self,
        start: &Value,
        token: T,
        ceremony: &Ceremony,
    ) -> Result<webauthn_rs_proto::PublicKeyCredential> {
        let options: RequestChallengeResponse = decode(start["options"].clone(), "assertion options")?;
        let origin = self.origin_for(&options.public_key.rp_id).await?;
        Ok(countersign_keys::sign_standard(token, ceremony, options.public_key, origin).await?)
    }

    /// Log in with the key: a short-lived session.
    ///
    /// # Errors
    /// `login.*`, `assertion.*`, key and transport errors.
    pub async fn login<T: Token + 'static>(
        &self,
        approver: &str,
        token: T,
        ceremony: &Ceremony,
    ) -> Result<Session> {
        let start = self.post("/v1/login/start", None, json!({ "approver": approver })).await?;
        let credential = self.assert_standard(&start, token, ceremony).await?;
        let done = self
            .post(
                "/v1/login/finish",
                None,
                json!({ "ceremony": text(&start, "ceremony")?, "credential": credential }),
            )
            .await?;
        Ok(Session(text(&done, "token")?))
    }

    /// Operations waiting for approvers, each verified against its canonical form.
    /// One that fails verification is an error for the whole list: something on the
    /// way is altering what approvers see.
    ///
    /// # Errors
    /// [`Error::Tampered`], `session.*`, transport errors.
    pub async fn pending(&self, session: &Session) -> Result<Vec<VerifiedOperation>> {
        self.operations(session, "/v1/approver/operations").await
    }

    /// The most recent operations that are no longer pending (released, rejected,
    /// expired, denied), newest first, each verified like a pending one.
    ///
    /// # Errors
    /// [`Error::Tampered`], `session.*`, transport errors.
    pub async fn history(&self, session: &Session) -> Result<Vec<VerifiedOperation>> {
        self.operations(session, "/v1/approver/operations?view=decided").await
    }

    async fn operations(&self, session: &Session, path: &str) -> Result<Vec<VerifiedOperation>> {
        let list = self.get(path, Some(session)).await?;
        let items =
            list["operations"].as_array().ok_or_else(|| Error::Protocol("no operations list".into()))?;
        // Decisions are checked against the registry's keys: fetched only when there
        // are some (a registry that cannot be read leaves them unchecked, and says so).
        let any_decisions = items.iter().any(|v| v["decisions"].as_array().is_some_and(|d| !d.is_empty()));
        let registry = if any_decisions { self.decision_registry().await } else { None };
        items.iter().map(|v| VerifiedOperation::from_view_checked(v, registry.as_ref())).collect()
    }

    /// Ask to decide: the gateway's challenge and the operation, verified. The
    /// operation must be the one asked for.
    ///
    /// # Errors
    /// [`Error::Tampered`], `decision.*`, `session.*`, transport errors.
    pub async fn challenge(
        &self,
        session: &Session,
        op_id: &str,
        decision: Decision,
    ) -> Result<DecisionChallenge> {
        let path = format!("/v1/operations/{op_id}/challenge");
        let r = self.post(&path, Some(session), json!({ "decision": decision })).await?;
        let operation = VerifiedOperation::from_view(&r["operation"])?;
        if operation.operation.id.to_string() != op_id {
            return Err(Error::Tampered(format!(
                "asked for {op_id}, the gateway sent {}",
                operation.operation.id
            )));
        }
        Ok(DecisionChallenge {
            ceremony: text(&r, "ceremony")?,
            options: decode(r["options"].clone(), "decision options")?,
            operation,
            decision,
        })
    }

    /// Sign the decision with the key over the verified operation and send it.
    ///
    /// # Errors
    /// `decision.*`, `binding.*`, `assertion.*`, key and transport errors.
    pub async fn sign_decision<T: Token + 'static>(
        &self,
        session: &Session,
        challenge: DecisionChallenge,
        reason: Option<&str>,
        token: T,
        ceremony: &Ceremony,
    ) -> Result<Value> {
        let options = challenge.options.public_key;
        let origin = self.origin_for(&options.rp_id).await?;
        let cdj =
            challenge.operation.client_data_json(&options.challenge, origin, challenge.decision, reason)?;
        let credential = countersign_keys::sign(token, ceremony, options, cdj).await?;
        let path = format!("/v1/operations/{}/decisions", challenge.operation.operation.id);
        self.post(
            &path,
            Some(session),
            json!({ "ceremony": challenge.ceremony, "credential": credential, "reason": reason }),
        )
        .await
    }

    /// Break glass: freeze every API key with one key touch. `true` if this froze
    /// them, `false` if they already were.
    ///
    /// # Errors
    /// `assertion.*`, key and transport errors.
    pub async fn freeze<T: Token + 'static>(
        &self,
        session: &Session,
        reason: &str,
        token: T,
        ceremony: &Ceremony,
    ) -> Result<bool> {
        let start = self.post("/v1/freeze/challenge", Some(session), json!({})).await?;
        let credential = self.assert_standard(&start, token, ceremony).await?;
        let done = self
            .post(
                "/v1/freeze",
                Some(session),
                json!({ "ceremony": text(&start, "ceremony")?, "credential": credential, "reason": reason }),
            )
            .await?;
        Ok(done["changed"].as_bool().unwrap_or(false))
    }

    /// Admins: invite a person (or a new key of theirs). The link is for them; the
    /// key counts once the admin quorum approves the enrollment.
    ///
    /// # Errors
    /// `admin.not_an_admin`, `approver.*`, transport errors.
    pub async fn invite(
        &self,
        session: &Session,
        approver: &str,
        name: &str,
        roles: &[String],
        groups: &[String],
    ) -> Result<String> {
        let body = json!({ "approver": approver, "name": name, "roles": roles, "groups": groups });
        text(&self.post("/v1/admin/enrollment-codes", Some(session), body).await?, "link")
    }

    /// Admins: every approver with roles, groups and keys.
    ///
    /// # Errors
    /// `admin.not_an_admin`, transport errors.
    pub async fn approvers(&self, session: &Session) -> Result<Value> {
        Ok(self.get("/v1/admin/approvers", Some(session)).await?["approvers"].clone())
    }

    /// The policy in force (any logged-in approver).
    ///
    /// # Errors
    /// `session.*`, transport errors.
    pub async fn policy(&self, session: &Session) -> Result<Value> {
        Ok(self.get("/v1/policy", Some(session)).await?["policy"].clone())
    }

    /// Admins: every API key (public fields; no secret ever leaves the gateway).
    ///
    /// # Errors
    /// `admin.not_an_admin`, transport errors.
    pub async fn api_keys(&self, session: &Session) -> Result<Value> {
        Ok(self.get("/v1/admin/api-keys", Some(session)).await?["api_keys"].clone())
    }

    /// Admins: revoke an API key at once (no quorum: revoking only removes power).
    ///
    /// # Errors
    /// `api_key.unknown`, `admin.not_an_admin`, transport errors.
    pub async fn revoke_api_key(&self, session: &Session, id: &str) -> Result<()> {
        let id = countersign_core::id::ApiKeyId::new(id).map_err(|e| Error::Protocol(e.to_string()))?;
        let path = format!("/v1/admin/api-keys/{}/revoke", id.as_str());
        self.post(&path, Some(session), json!({})).await.map(|_| ())
    }

    /// Admins: propose an administrative change (an `Action` as JSON). It waits for
    /// the admin quorum; the operation is returned verified.
    ///
    /// # Errors
    /// `admin.*`, `operation.*`, [`Error::Tampered`], transport errors.
    pub async fn propose(&self, session: &Session, action: Value) -> Result<VerifiedOperation> {
        let view = self.post("/v1/admin/operations", Some(session), json!({ "action": action })).await?;
        VerifiedOperation::from_view(&view)
    }

    /// Admins: the audit chain export (JSON lines) for `audit verify`.
    ///
    /// # Errors
    /// `admin.not_an_admin`, transport errors.
    pub async fn audit_export(&self, session: &Session) -> Result<String> {
        let resp = self
            .transport
            .http
            .get(format!("{}/v1/admin/audit", self.transport.base))
            .bearer_auth(session.expose())
            .send()
            .await
            .map_err(|e| self.transport.failure(&e))?;
        if !resp.status().is_success() {
            return Err(Error::from_response(resp).await);
        }
        resp.text().await.map_err(|e| Error::Protocol(e.to_string()))
    }

    /// The approver registry, signed by the gateway (settlement verifies with it).
    ///
    /// # Errors
    /// Transport errors.
    pub async fn registry(&self) -> Result<Value> {
        self.get("/v1/registry", None).await
    }
}
