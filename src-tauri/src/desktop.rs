//! The app's state and what each command does. Secrets stay here: the session token
//! never leaves Rust, a PIN passes through once on its way to the key.

use std::collections::HashMap;
use std::sync::Arc;

use countersign_client::{Client, DecisionChallenge, Profile, Session, Update, VerifiedOperation};
use countersign_core::Decision;
use countersign_keys::{Cancel, Ceremony};
use serde::Serialize;
use serde_json::{Value, json};
use tauri::{AppHandle, Emitter};
use tokio::sync::Mutex;
use webauthn_authenticator_rs::usb::USBToken;

use crate::prompt::{Answers, WindowPrompt};

/// The one error shape the window sees: a stable code and a human message.
#[derive(Debug, Serialize)]
pub struct AppError {
    code: String,
    message: String,
}

impl From<countersign_client::Error> for AppError {
    fn from(e: countersign_client::Error) -> AppError {
        AppError { code: e.code().to_owned(), message: e.to_string() }
    }
}

impl From<countersign_keys::Error> for AppError {
    fn from(e: countersign_keys::Error) -> AppError {
        AppError { code: e.code().to_owned(), message: e.to_string() }
    }
}

fn app_error(code: &str, message: impl Into<String>) -> AppError {
    AppError { code: code.to_owned(), message: message.into() }
}

/// What the window shows in its header and banner.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    gateway: String,
    approver: Option<String>,
    logged_in: bool,
    software_key: bool,
    demo_pin: Option<String>,
}

/// The key this app signs with.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A USB security key, found when a ceremony starts.
    Usb,
    /// **The software key** (demo mode only).
    #[cfg(feature = "demo")]
    Soft(countersign_softkey::SoftKey),
}

#[cfg(feature = "demo")]
type AnyKey = countersign_softkey::KeyOrSoft<USBToken>;
#[cfg(not(feature = "demo"))]
type AnyKey = USBToken;

/// Countersign Desktop.
pub struct Desktop {
    app: AppHandle,
    /// The gateway and who you are there; set by enrollment when absent.
    enrolled: std::sync::Mutex<Option<(Profile, Client)>>,
    /// Where enrollment saves the profile (none in demo mode: nothing is kept).
    profile_dir: Option<std::path::PathBuf>,
    key: KeySource,
    demo_pin: Option<String>,
    prompt: Arc<WindowPrompt>,
    answers: Answers,
    session: Mutex<Option<Session>>,
    prepared: Mutex<HashMap<String, DecisionChallenge>>,
    cancel: std::sync::Mutex<Option<Cancel>>,
}

impl Desktop {
    /// The app for `profile` (none: not enrolled yet).
    ///
    /// # Errors
    /// The profile names an insecure gateway address.
    pub fn new(
        app: AppHandle,
        profile: Option<Profile>,
        profile_dir: Option<std::path::PathBuf>,
        key: KeySource,
        demo_pin: Option<String>,
    ) -> Result<Desktop, AppError> {
        let enrolled = match profile {
            Some(p) => {
                let client = p.client()?;
                Some((p, client))
            }
            None => None,
        };
        let (prompt, answers) = crate::prompt::pair(app.clone());
        Ok(Desktop {
            app,
            enrolled: std::sync::Mutex::new(enrolled),
            profile_dir,
            key,
            demo_pin,
            prompt: Arc::new(prompt),
            answers,
            session: Mutex::new(None),
            prepared: Mutex::new(HashMap::new()),
            cancel: std::sync::Mutex::new(None),
        })
    }

    fn client(&self) -> Result<(Profile, Client), AppError> {
        self.enrolled.lock().ok().and_then(|e| e.clone()).ok_or_else(|| {
            app_error("desktop.not_enrolled", "enroll your key with the link an admin sent you first")
        })
    }

    /// First run: enroll this key with an enrollment link and remember the gateway.
    pub async fn enroll(&self, link: &str, label: &str) -> Result<Status, AppError> {
        let link = countersign_client::EnrollmentLink::parse(link)?;
        let client = Client::for_link(&link)?;
        let enrolled = client.enroll(&link.code, label, self.key().await?, &self.ceremony()).await?;
        let profile = Profile {
            gateway: link.gateway.clone(),
            pin: link.pin.clone(),
            approver: enrolled.approver,
            relying_party: Some(client.relying_party().await?.clone()),
            genesis: None,
        };
        if let Some(dir) = &self.profile_dir {
            profile.save(dir).map_err(|e| app_error("desktop.profile", e))?;
        }
        if let Ok(mut e) = self.enrolled.lock() {
            *e = Some((profile, client));
        }
        Ok(self.status().await)
    }

    /// Lock: forget the session; the next action needs the key again.
    pub async fn lock(&self) -> Status {
        *self.session.lock().await = None;
        self.prepared.lock().await.clear();
        self.status().await
    }

    async fn session(&self) -> Result<Session, AppError> {
        self.session
            .lock()
            .await
            .clone()
            .ok_or_else(|| app_error("session.missing", "log in with your key first"))
    }

    /// A ceremony whose cancel handle the `cancel_ceremony` command can reach.
    fn ceremony(&self) -> Ceremony {
        let ceremony = Ceremony::new(self.prompt.clone());
        if let Ok(mut c) = self.cancel.lock() {
            *c = Some(ceremony.cancel_handle());
        }
        ceremony
    }

    async fn key(&self) -> Result<AnyKey, AppError> {
        match &self.key {
            #[cfg(feature = "demo")]
            KeySource::Soft(k) => Ok(countersign_softkey::KeyOrSoft::Software(k.clone())),
            KeySource::Usb => {
                let (token, _) = countersign_keys::usb::choose(self.prompt.as_ref()).await?;
                #[cfg(feature = "demo")]
                return Ok(countersign_softkey::KeyOrSoft::Hardware(token));
                #[cfg(not(feature = "demo"))]
                Ok(token)
            }
        }
    }

    pub async fn status(&self) -> Status {
        let profile = self.enrolled.lock().ok().and_then(|e| e.as_ref().map(|(p, _)| p.clone()));
        Status {
            gateway: profile.as_ref().map(|p| p.gateway.clone()).unwrap_or_default(),
            approver: profile.map(|p| p.approver),
            logged_in: self.session.lock().await.is_some(),
            software_key: !matches!(self.key, KeySource::Usb),
            demo_pin: self.demo_pin.clone(),
        }
    }

    pub async fn login(&self) -> Result<Status, AppError> {
        let (profile, client) = self.client()?;
        let session = client.login(&profile.approver, self.key().await?, &self.ceremony()).await?;
        *self.session.lock().await = Some(session.clone());
        self.follow_events(client, session);
        Ok(self.status().await)
    }

    /// Push the gateway's live events to the window.
    fn follow_events(&self, client: Client, session: Session) {
        let app = self.app.clone();
        tauri::async_runtime::spawn(async move {
            let mut updates = client.events(&session, None);
            while let Some(update) = updates.recv().await {
                let sent = match update {
                    Update::Event(e) => {
                        if e.event == "operation.pending" {
                            crate::integration::notify(
                                "Waiting for your approval",
                                "A new operation needs approvers. Open Countersign to review it.",
                            );
                        }
                        app.emit("gateway-event", json!({"id": e.id, "event": e.event, "data": e.data}))
                    }
                    Update::Reconnecting { error, retry_in } => app.emit(
                        "gateway-status",
                        json!({"connected": false, "error": error, "retryInMs": retry_in.as_millis()}),
                    ),
                    Update::Refused(e) => {
                        let _ =
                            app.emit("gateway-status", json!({"connected": false, "error": e.to_string()}));
                        break;
                    }
                };
                if sent.is_err() {
                    break;
                }
            }
        });
    }

    pub async fn pending(&self) -> Result<Vec<VerifiedOperation>, AppError> {
        let (_, client) = self.client()?;
        let ops = client.pending(&self.session().await?).await?;
        crate::integration::set_pending_count(&self.app, ops.len());
        Ok(ops)
    }

    /// Recently decided operations (released, rejected, expired, denied).
    pub async fn history(&self) -> Result<Vec<VerifiedOperation>, AppError> {
        let (_, client) = self.client()?;
        Ok(client.history(&self.session().await?).await?)
    }

    /// What this app is connected to and with which key. Nothing secret: the pinned
    /// value is a hash of the gateway's public key.
    pub async fn settings(&self) -> Value {
        let profile = self.enrolled.lock().ok().and_then(|e| e.as_ref().map(|(p, _)| p.clone()));
        let keys = match &self.key {
            KeySource::Usb => match countersign_keys::usb::keys().await {
                Ok(found) => json!(found.into_iter().map(|(_, info)| info).collect::<Vec<_>>()),
                Err(e) => json!({ "error": e.to_string() }),
            },
            #[cfg(feature = "demo")]
            KeySource::Soft(_) => json!([{ "label": "SOFTWARE KEY (demo)", "software": true }]),
        };
        json!({
            "authority": self.authority().await,
            "gateway": profile.as_ref().map(|p| p.gateway.clone()),
            "pinnedKey": profile.as_ref().and_then(|p| p.pin.clone()),
            "approver": profile.map(|p| p.approver),
            "profileDir": self.profile_dir.as_ref().map(|d| d.display().to_string()),
            "softwareKey": !matches!(self.key, KeySource::Usb),
            "keys": keys,
        })
    }

    /// The gateway's authority chain, verified here from its genesis: the genesis
    /// hash (people compare it with their admins) and the head. `null` before a
    /// genesis is sealed.
    async fn authority(&self) -> Value {
        let Ok((_, client)) = self.client() else { return Value::Null };
        match client.authority().await {
            Ok(doc) => {
                let genesis = match doc.genesis.genesis.hash() {
                    Ok(h) => h.to_hex(),
                    Err(e) => return json!({ "error": e.to_string() }),
                };
                match countersign_core::authority::Authority::from_document(&genesis, &doc) {
                    Ok(chain) => {
                        json!({ "genesis": genesis, "head": chain.head(), "links": doc.links.len() })
                    }
                    Err(e) => json!({ "error": format!("the chain does not verify: {}: {e}", e.code()) }),
                }
            }
            Err(e) if e.code() == "authority.no_genesis" => match client.genesis().await {
                // A draft waiting for the founding keys: show its hash (computed here)
                // and whether this person's key is among those still to sign.
                Ok(draft) => {
                    let me =
                        self.enrolled.lock().ok().and_then(|e| e.as_ref().map(|(p, _)| p.approver.clone()));
                    let yours = draft.missing.iter().any(|(who, _)| Some(who) == me.as_ref());
                    let missing: Vec<&str> = draft.missing.iter().map(|(who, _)| who.as_str()).collect();
                    json!({ "draft": { "hash": draft.hash, "missing": missing, "yours": yours } })
                }
                Err(_) => Value::Null,
            },
            Err(e) => json!({ "error": e.to_string() }),
        }
    }

    /// A founding person signs the genesis draft with their key, only if it hashes
    /// to `hash` (the value they compared with the others out of band).
    pub async fn sign_genesis(&self, hash: &str) -> Result<Value, AppError> {
        let (profile, client) = self.client()?;
        let session = self.session().await?;
        let done = client
            .sign_genesis(&session, &profile.approver, hash, self.key().await?, &self.ceremony())
            .await?;
        // The hash this person compared and signed is the one their profile pins.
        let profile = Profile { genesis: Some(done.hash.clone()), ..profile };
        if let Some(dir) = &self.profile_dir {
            profile.save(dir).map_err(|e| app_error("desktop.profile", e))?;
        }
        let client = profile.client()?;
        if let Ok(mut e) = self.enrolled.lock() {
            *e = Some((profile, client));
        }
        Ok(json!({ "sealed": done.sealed, "missing": done.missing.len() }))
    }

    /// Admins: people with their keys, and API keys (no secrets).
    pub async fn admin_overview(&self) -> Result<Value, AppError> {
        let (_, client) = self.client()?;
        let session = self.session().await?;
        let approvers = client.approvers(&session).await?;
        let api_keys = client.api_keys(&session).await?;
        Ok(json!({ "approvers": approvers, "apiKeys": api_keys }))
    }

    /// Admins: an enrollment link for a new person (their key counts after the
    /// admin quorum approves). The link is meant to be handed on, so it is shown.
    pub async fn admin_invite(
        &self,
        id: &str,
        name: &str,
        roles: &[String],
        groups: &[String],
    ) -> Result<String, AppError> {
        let (_, client) = self.client()?;
        Ok(client.invite(&self.session().await?, id, name, roles, groups).await?)
    }

    /// The policy in force.
    pub async fn policy(&self) -> Result<Value, AppError> {
        let (_, client) = self.client()?;
        Ok(client.policy(&self.session().await?).await?)
    }

    /// Admins: propose a change (an `Action` as JSON) for the admin quorum. The
    /// gateway's answer is verified like any operation before it is shown.
    pub async fn admin_propose(&self, action: Value) -> Result<VerifiedOperation, AppError> {
        let (_, client) = self.client()?;
        Ok(client.propose(&self.session().await?, action).await?)
    }

    /// Admins: revoke an API key at once.
    pub async fn admin_revoke_api_key(&self, id: &str) -> Result<(), AppError> {
        let (_, client) = self.client()?;
        Ok(client.revoke_api_key(&self.session().await?, id).await?)
    }

    pub async fn prepare(&self, id: &str, decision: Decision) -> Result<VerifiedOperation, AppError> {
        let (_, client) = self.client()?;
        let challenge = client.challenge(&self.session().await?, id, decision).await?;
        let operation = challenge.operation.clone();
        self.prepared.lock().await.insert(id.to_owned(), challenge);
        Ok(operation)
    }

    pub async fn sign(&self, id: &str, reason: Option<String>) -> Result<Value, AppError> {
        let (_, client) = self.client()?;
        let challenge = self
            .prepared
            .lock()
            .await
            .remove(id)
            .ok_or_else(|| app_error("ceremony.unknown", "ask for a challenge first"))?;
        let session = self.session().await?;
        let key = self.key().await?;
        Ok(client.sign_decision(&session, challenge, reason.as_deref(), key, &self.ceremony()).await?)
    }

    pub fn answer_pin(&self, pin: Option<String>) {
        self.answers.pin(pin);
    }

    pub fn answer_last_retry(&self, confirm: bool) {
        self.answers.confirm(confirm);
    }

    pub fn answer_choice(&self, index: Option<usize>) {
        self.answers.choice(index);
    }

    pub fn cancel(&self) {
        self.answers.pin(None);
        self.answers.confirm(false);
        self.answers.choice(None);
        if let Ok(c) = self.cancel.lock()
            && let Some(c) = c.as_ref()
        {
            c.cancel();
        }
    }

    pub async fn freeze(&self, reason: &str) -> Result<bool, AppError> {
        let (_, client) = self.client()?;
        let session = self.session().await?;
        Ok(client.freeze(&session, reason, self.key().await?, &self.ceremony()).await?)
    }
}
