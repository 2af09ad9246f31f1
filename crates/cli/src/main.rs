//! `countersign`: approve or reject withdrawals with your security key, freeze every
//! API key in an emergency, and verify releases offline.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod chain;
mod key;
mod profile;
mod show;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use countersign_client::{Client, EnrollmentLink, Error, Session, Update};
use countersign_core::Decision;
use countersign_keys::Ceremony;
use serde_json::{Value, json};

use crate::key::Terminal;
use crate::show::{decision_line, fields, summary};
use countersign_client::Profile;

use crate::profile::SessionStore;

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  usage or local error (no profile, unreadable file)
  2  the gateway refused (its error code is printed)
  3  the security key failed (no key, wrong PIN, timeout, cancelled, …)
  4  the gateway could not be reached safely (unreachable, timeout, pinned key mismatch)
  5  verification failed (an operation altered on the way, a certificate or audit
     chain that does not verify)";

#[derive(Debug, Parser)]
#[command(name = "countersign", version, about = "Approve withdrawals with your security key; verify releases offline.", after_help = EXIT_CODES)]
struct Cli {
    /// Where the profile (gateway, pinned key, approver) lives.
    #[arg(long, global = true, env = "COUNTERSIGN_HOME")]
    profile_dir: Option<PathBuf>,
    /// Where the session token lives.
    #[arg(long, global = true, value_enum, default_value = "keyring")]
    session_store: SessionStore,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// Use a SOFTWARE key state file instead of a USB key (tests and demo builds only).
    #[arg(long, global = true, hide = true)]
    soft_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll your security key with an enrollment link from an admin.
    Enroll {
        /// countersign://enroll?gateway=…&code=…&pin=…
        link: String,
        /// A name for this key (shown to admins).
        #[arg(long, default_value = "security key")]
        label: String,
    },
    /// Log in with your key (PIN and touch).
    Login,
    /// Operations waiting for approvers.
    Pending,
    /// Every field of one pending operation, its fingerprint, risk signals and quorum.
    Show { id: String },
    /// Approve an operation with your key.
    Approve { id: String },
    /// Reject an operation with your key (one rejection vetoes it).
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Follow live events.
    Watch {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Break glass: freeze every API key with one touch.
    Freeze {
        #[arg(long)]
        reason: String,
    },
    /// Settlement: verify a release document offline, from the pinned genesis hash
    /// and the authority chain (or, before a genesis exists, a registry and policy).
    VerifyCertificate {
        /// The release document (JSON) that came with the transfer.
        file: PathBuf,
        /// The genesis hash settlement pins (hex).
        #[arg(long, requires = "authority")]
        genesis: Option<String>,
        /// The authority chain (JSON from GET /v1/authority).
        #[arg(long, requires = "genesis")]
        authority: Option<PathBuf>,
        /// Before a genesis: the approver registry (JSON from GET /v1/registry).
        #[arg(long, conflicts_with = "genesis")]
        registry: Option<PathBuf>,
        /// Before a genesis: the policy settlement trusts (JSON).
        #[arg(long, conflicts_with = "genesis")]
        policy: Option<PathBuf>,
        /// The gateway's Ed25519 public key, base64url (it may begin with '-').
        #[arg(long, allow_hyphen_values = true)]
        gateway_key: String,
    },
    /// The authority chain's genesis: show it, or sign it with your key.
    #[command(subcommand)]
    Genesis(chain::GenesisCommand),
    /// Verify the gateway's authority chain from the genesis hash you pin, and list
    /// its links. The first `--genesis` is pinned in your profile (signing the
    /// genesis pins it too); later runs use the pin.
    Chain {
        /// The genesis hash your admins compared (hex).
        #[arg(long)]
        genesis: Option<String>,
    },
    /// Admins: people, keys and administrative changes (each change waits for the
    /// admin quorum; approve it with `countersign approve <id>`).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Audit chain exports.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Tests and demo builds only: make a SOFTWARE key state file with a PIN (read like
    /// any PIN: from the terminal, or a line of standard input). Never for real
    /// approvals; the key is labelled and attested as software.
    #[cfg(feature = "softkey")]
    #[command(hide = true)]
    SoftKeyCreate {
        file: PathBuf,
        #[arg(long, default_value = "software key")]
        label: String,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Every approver with roles, groups and keys.
    Approvers,
    /// Invite a person (or a new key of theirs): prints the enrollment link to give
    /// them over a channel you trust. Their key counts after the admin quorum.
    Invite {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// approver, admin (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', required = true)]
        role: Vec<String>,
        /// Groups used by policy quorums.
        #[arg(long, value_delimiter = ',')]
        group: Vec<String>,
    },
    /// Propose revoking a person (or one of their keys); one admin's approval, yours
    /// included, applies it at once.
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
        /// Only this key (credential id).
        #[arg(long)]
        credential: Option<String>,
    },
    /// Propose an allowlisted destination.
    AllowlistAdd {
        #[arg(long)]
        account: String,
        #[arg(long)]
        network: String,
        #[arg(long)]
        address: String,
        #[arg(long)]
        memo: Option<String>,
        #[arg(long)]
        label: String,
    },
    /// Every API key: owner, scopes, source allowlist, limit, expiry, last use.
    ApiKeys,
    /// Propose a new API key. Make the Ed25519 key pair where the bot runs and give
    /// only its public half here: approvers sign exactly that key, and no secret
    /// travels. It works after the admin quorum.
    ApiKeyCreate {
        /// Key id, e.g. key_mm2.
        #[arg(long)]
        id: String,
        /// The person responsible for it (never counts as an approver of its withdrawals).
        #[arg(long)]
        owner: String,
        /// What it is for ("market maker 2, Frankfurt").
        #[arg(long)]
        label: String,
        /// Ed25519 public key, base64url without padding (32 bytes). It may begin
        /// with '-'.
        #[arg(long, allow_hyphen_values = true)]
        public_key: String,
        /// Scopes: read, withdraw (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// Allowed source CIDR blocks (repeat or comma-separate); none allows nothing.
        #[arg(long = "allow-ip", value_delimiter = ',')]
        allow_ip: Vec<String>,
        /// Refuse single withdrawals worth more than this (reference currency).
        #[arg(long)]
        max_value: Option<String>,
        /// Stops working at this time (RFC 3339, e.g. 2027-06-01T00:00:00Z).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Revoke an API key now. One admin suffices: revoking only removes power.
    ApiKeyRevoke { id: String },
    /// The policy in force (JSON): tiers, quorums, allowlist, velocity, admin quorum.
    PolicyShow,
    /// Propose a new policy (JSON file).
    PolicyPropose { file: PathBuf },
    /// Propose any administrative action (JSON file: {"kind": …, "details": …}).
    Propose { file: PathBuf },
    /// Export the audit chain (JSON lines) for `countersign audit verify`.
    AuditExport {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify an exported audit chain offline and name the first broken entry.
    Verify {
        file: PathBuf,
        /// The gateway's Ed25519 public key, base64url (it may begin with '-').
        #[arg(long, allow_hyphen_values = true)]
        gateway_key: String,
    },
}

/// A failure with its exit code.
struct Failure(u8, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let code = match &e {
            Error::Gateway { .. } => 2,
            Error::Key(_) => 3,
            Error::PinMismatch { .. }
            | Error::RelyingPartyChanged { .. }
            | Error::Insecure(_)
            | Error::Unreachable(_)
            | Error::Timeout => 4,
            Error::Tampered(_) => 5,
            Error::Protocol(_) | Error::Link(_) => 1,
        };
        Failure(code, format!("{} [{}]", e, e.code()))
    }
}

impl From<countersign_keys::Error> for Failure {
    fn from(e: countersign_keys::Error) -> Failure {
        Failure(3, format!("{e} [{}]", e.code()))
    }
}

fn local(message: impl Into<String>) -> Failure {
    Failure(1, message.into())
}

type Outcome = Result<(), Failure>;

struct Ctx {
    dir: PathBuf,
    store: SessionStore,
    json: bool,
    soft_key: Option<PathBuf>,
}

impl Ctx {
    fn print(&self, human: String, json: Value) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
        } else {
            println!("{human}");
        }
    }

    fn client(&self) -> Result<(Profile, Client), Failure> {
        let profile = Profile::load(&self.dir).map_err(local)?;
        let client = profile.client()?;
        Ok((profile, client))
    }

    fn session(&self) -> Result<(Profile, Client, Session), Failure> {
        let (profile, client) = self.client()?;
        let session = self.store.load(&self.dir, &profile).map_err(local)?;
        Ok((profile, client, session))
    }

    async fn key(&self) -> Result<key::AnyKey, Failure> {
        Ok(key::open(self.soft_key.as_deref(), &Terminal).await?)
    }
}

fn ceremony() -> Ceremony {
    Ceremony::new(Arc::new(Terminal))
}

async fn run(cli: Cli) -> Outcome {
    let ctx = Ctx {
        dir: countersign_client::profile::dir(cli.profile_dir.as_deref()),
        store: cli.session_store,
        json: cli.json,
        soft_key: cli.soft_key,
    };
    match cli.command {
        Command::Enroll { link, label } => {
            let link = EnrollmentLink::parse(&link)?;
            let client = Client::for_link(&link)?;
            let enrolled = client.enroll(&link.code, &label, ctx.key().await?, &ceremony()).await?;
            let profile = Profile {
                gateway: link.gateway.clone(),
                pin: link.pin.clone(),
                approver: enrolled.approver.clone(),
                relying_party: Some(client.relying_party().await?.clone()),
                genesis: None,
            };
            profile.save(&ctx.dir).map_err(local)?;
            let next = if enrolled.status == "active" {
                "run `countersign login`"
            } else {
                "it counts once admins approve the enrollment"
            };
            ctx.print(
                format!("Enrolled a key for {} at {} ({}): {next}", enrolled.approver, link.gateway, enrolled.status),
                json!({"approver": enrolled.approver, "credential_id": enrolled.credential_id, "status": enrolled.status, "gateway": link.gateway}),
            );
        }
        Command::Login => {
            let (profile, client) = ctx.client()?;
            let session = client.login(&profile.approver, ctx.key().await?, &ceremony()).await?;
            ctx.store.save(&ctx.dir, &profile, &session).map_err(local)?;
            ctx.print(format!("Logged in as {}", profile.approver), json!({"approver": profile.approver}));
        }
        Command::Pending => {
            let (_, client, session) = ctx.session()?;
            let ops = client.pending(&session).await?;
            let human = if ops.is_empty() {
                "Nothing is waiting.".to_owned()
            } else {
                ops.iter().map(summary).collect::<Vec<_>>().join("\n")
            };
            ctx.print(human, json!(ops));
        }
        Command::Show { id } => {
            let (_, client, session) = ctx.session()?;
            let ops = client.pending(&session).await?;
            let op = ops.into_iter().find(|o| o.operation.id.to_string() == id).ok_or_else(|| {
                Failure(2, format!("{id} is not waiting for approvers [operation.not_pending]"))
            })?;
            let mut lines =
                vec![summary(&op), format!("fingerprint: {}   digest: {}", op.fingerprint, op.digest)];
            fields("", &serde_json::to_value(&op.operation).unwrap_or(Value::Null), &mut lines);
            lines.push("risk:".into());
            fields("", &op.risk, &mut lines);
            lines.push("quorum:".into());
            fields("", &op.verdict, &mut lines);
            if !op.decisions.is_empty() {
                lines.push("decisions (each signature checked here):".into());
                lines.extend(op.decisions.iter().map(decision_line));
            }
            ctx.print(lines.join("\n"), json!(op));
        }
        Command::Approve { id } => decide(&ctx, &id, Decision::Approve, None).await?,
        Command::Reject { id, reason } => decide(&ctx, &id, Decision::Reject, Some(&reason)).await?,
        Command::Watch { count } => {
            let (_, client, session) = ctx.session()?;
            let mut events = client.events(&session, None);
            let mut seen = 0;
            while let Some(update) = events.recv().await {
                match update {
                    Update::Event(e) => {
                        ctx.print(
                            format!("{}  {}  {}", e.id, e.event, e.data["operation"].as_str().unwrap_or("")),
                            json!({"id": e.id, "event": e.event, "data": e.data}),
                        );
                        seen += 1;
                        if count.is_some_and(|c| seen >= c) {
                            break;
                        }
                    }
                    Update::Reconnecting { error, retry_in } => {
                        eprintln!("connection lost ({error}); reconnecting in {retry_in:?}");
                    }
                    Update::Refused(e) => return Err(e.into()),
                }
            }
        }
        Command::Freeze { reason } => {
            let (_, client, session) = ctx.session()?;
            let changed = client.freeze(&session, &reason, ctx.key().await?, &ceremony()).await?;
            let human = if changed { "Every API key is frozen." } else { "Already frozen." };
            ctx.print(human.into(), json!({"frozen": true, "changed": changed}));
        }
        Command::VerifyCertificate { file, genesis, authority, registry, policy, gateway_key } => {
            let trusted = chain::Trusted { genesis, authority, registry, policy, gateway_key };
            chain::verify_certificate(&ctx, &file, trusted)?;
        }
        Command::Genesis(cmd) => chain::genesis(&ctx, cmd).await?,
        Command::Chain { genesis } => chain::chain(&ctx, genesis.as_deref()).await?,
        Command::Admin(cmd) => admin(&ctx, cmd).await?,
        Command::Audit(AuditCommand::Verify { file, gateway_key }) => {
            let key = gateway_key_from(&gateway_key)?;
            let text = String::from_utf8(read(&file)?).map_err(|e| local(e.to_string()))?;
            let s = countersign_core::audit::verify_export(&text, &key)
                .map_err(|e| Failure(5, format!("the audit chain does not verify: {e}")))?;
            ctx.print(
                format!("OK: {} entries, {} signed checkpoints, head {}", s.entries, s.checkpoints, s.head),
                json!({"entries": s.entries, "checkpoints": s.checkpoints, "head": s.head}),
            );
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "countersign", &mut std::io::stdout());
        }
        #[cfg(feature = "softkey")]
        Command::SoftKeyCreate { file, label } => {
            use countersign_keys::Prompt as _;
            eprintln!("\x1b[41;97m WARNING: SOFTWARE KEY — not a security key; tests and demo only \x1b[0m");
            let request = countersign_keys::PinRequest { retries_left: None, previous_attempt_wrong: false };
            let pin = Terminal.pin(&request).ok_or_else(|| local("no PIN given"))?;
            let key =
                countersign_softkey::SoftKey::create(&file, &label).map_err(|e| local(e.to_string()))?;
            key.set_pin(pin.expose()).map_err(|e| local(e.to_string()))?;
            ctx.print(format!("Software key {} created", file.display()), json!({"file": file}));
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| local(e.to_string()))?;
        }
    }
    Ok(())
}

async fn admin(ctx: &Ctx, cmd: AdminCommand) -> Outcome {
    let (_, client, session) = ctx.session()?;
    let action = match cmd {
        AdminCommand::Approvers => {
            let list = client.approvers(&session).await?;
            let mut lines = Vec::new();
            for a in list.as_array().into_iter().flatten() {
                lines.push(format!(
                    "{}  {}  roles {}  groups {}{}",
                    a["id"].as_str().unwrap_or("?"),
                    a["display_name"].as_str().unwrap_or(""),
                    a["roles"],
                    a["groups"],
                    if a["revoked"].as_bool() == Some(true) { "  REVOKED" } else { "" }
                ));
                for k in a["credentials"].as_array().into_iter().flatten() {
                    lines.push(format!(
                        "    key {}  {}  {}{}",
                        k["id"].as_str().unwrap_or("?"),
                        k["label"].as_str().unwrap_or(""),
                        k["status"].as_str().unwrap_or("?"),
                        if k["software"].as_bool() == Some(true) { "  SOFTWARE KEY" } else { "" }
                    ));
                }
            }
            ctx.print(lines.join("\n"), list);
            return Ok(());
        }
        AdminCommand::Invite { id, name, role, group } => {
            let link = client.invite(&session, &id, &name, &role, &group).await?;
            ctx.print(
                format!(
                    "Enrollment link for {id} (single use; give it to them over a channel you trust):\n{link}"
                ),
                json!({"approver": id, "link": link}),
            );
            return Ok(());
        }
        AdminCommand::ApiKeys => {
            let list = client.api_keys(&session).await?;
            let lines: Vec<String> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| {
                    format!(
                        "{}  {}  owner {}  scopes {}  allow {}  max {}  last used {}{}",
                        k["id"].as_str().unwrap_or("?"),
                        k["algorithm"].as_str().unwrap_or("?"),
                        k["owner"].as_str().unwrap_or("?"),
                        k["scopes"],
                        k["ip_allowlist"],
                        k["max_reference_value"].as_str().unwrap_or("none"),
                        k["last_used_at"].as_str().unwrap_or("never"),
                        if k["revoked_at"].is_null() { "" } else { "  REVOKED" }
                    )
                })
                .collect();
            ctx.print(if lines.is_empty() { "No API keys.".into() } else { lines.join("\n") }, list);
            return Ok(());
        }
        AdminCommand::PolicyShow => {
            let policy = client.policy(&session).await?;
            let text = serde_json::to_string_pretty(&policy).map_err(|e| local(e.to_string()))?;
            ctx.print(text, policy);
            return Ok(());
        }
        AdminCommand::ApiKeyRevoke { id } => {
            client.revoke_api_key(&session, &id).await?;
            ctx.print(
                format!("Revoked API key {id}; its requests are refused from now on."),
                json!({"revoked": id}),
            );
            return Ok(());
        }
        AdminCommand::AuditExport { out } => {
            let export = client.audit_export(&session).await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &export).map_err(|e| local(format!("{}: {e}", path.display())))?;
                    eprintln!("{} lines written to {}", export.lines().count(), path.display());
                }
                None => print!("{export}"),
            }
            return Ok(());
        }
        AdminCommand::Revoke { id, reason, credential } => json!({
            "kind": "approver_revoke",
            "details": {"approver": id, "credential_id": credential, "reason": reason},
        }),
        AdminCommand::AllowlistAdd { account, network, address, memo, label } => json!({
            "kind": "allowlist_add",
            "details": {"account": account, "network": network, "destination": {"address": address, "memo": memo}, "label": label},
        }),
        AdminCommand::ApiKeyCreate {
            id,
            owner,
            label,
            public_key,
            scope,
            allow_ip,
            max_value,
            expires_at,
        } => {
            let mut scope = scope;
            scope.sort();
            scope.dedup();
            let mut allow_ip = allow_ip;
            allow_ip.sort();
            allow_ip.dedup();
            json!({
                "kind": "api_key_create",
                "details": {
                    "key_id": id, "owner": owner, "label": label, "algorithm": "ed25519",
                    "public_key": public_key, "scopes": scope, "ip_allowlist": allow_ip,
                    "max_reference_value": max_value, "expires_at": expires_at,
                },
            })
        }
        AdminCommand::PolicyPropose { file } => {
            let policy: Value = serde_json::from_slice(&read(&file)?)
                .map_err(|e| local(format!("{}: {e}", file.display())))?;
            json!({"kind": "policy_update", "details": {"policy": policy}})
        }
        AdminCommand::Propose { file } => {
            serde_json::from_slice(&read(&file)?).map_err(|e| local(format!("{}: {e}", file.display())))?
        }
    };
    let op = client.propose(&session, strip_nulls(action)).await?;
    let next = if countersign_core::rules::one_admin_suffices(&op.operation) {
        "One admin's key applies it, yours included: run `countersign approve"
    } else {
        "It waits for the admin quorum: other admins run `countersign approve"
    };
    ctx.print(format!("Proposed: {}\n{next} {}`.", summary(&op), op.operation.id), json!(op));
    Ok(())
}

/// Drop null members (optional fields left out), as the strict decoder wants.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

async fn decide(ctx: &Ctx, id: &str, decision: Decision, reason: Option<&str>) -> Outcome {
    let (_, client, session) = ctx.session()?;
    let challenge = client.challenge(&session, id, decision).await?;
    eprintln!("{}", summary(&challenge.operation));
    eprintln!(
        "Compare the fingerprint {} with the requester before you touch the key.",
        challenge.operation.fingerprint
    );
    let outcome = client.sign_decision(&session, challenge, reason, ctx.key().await?, &ceremony()).await?;
    let state = outcome["state"].as_str().unwrap_or("?").to_owned();
    ctx.print(format!("{decision:?} counted; the operation is {state}"), outcome);
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| local(format!("{}: {e}", path.display())))
}

fn gateway_key_from(b64: &str) -> Result<ed25519_dalek::VerifyingKey, Failure> {
    data_encoding::BASE64URL_NOPAD
        .decode(b64.as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| local("--gateway-key must be a base64url Ed25519 public key"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            if json {
                println!("{}", json!({"error": message, "exit": code}));
            }
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// One base64url key in 64 begins with '-': it is a value, not a flag.
    #[test]
    fn keys_beginning_with_a_hyphen_are_values() {
        let key = "-2yQ9f6Xb3c4d5e6f7g8h9i0j1k2l3m4n5o6p7q8r9s";
        let cli =
            Cli::try_parse_from(["countersign", "audit", "verify", "x.jsonl", "--gateway-key", key]).unwrap();
        assert!(
            matches!(cli.command, Command::Audit(AuditCommand::Verify { gateway_key, .. }) if gateway_key == key)
        );
        let cli = Cli::try_parse_from([
            "countersign",
            "verify-certificate",
            "release.json",
            "--registry",
            "r.json",
            "--policy",
            "p.json",
            "--gateway-key",
            key,
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::VerifyCertificate { gateway_key, .. } if gateway_key == key));
    }
}
