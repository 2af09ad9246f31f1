//! `countersign-gateway`: the server, and the host-side administration commands.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use countersign_core::Amount;
use countersign_core::id::{AccountId, ApiKeyId, ApproverId, NetworkId};
use countersign_core::operation::{Destination, Scope, SigningAlgorithm};
use countersign_gateway::clock::{Clock, SystemClock};
use countersign_gateway::config::Config;
use countersign_gateway::keys::random_bytes;
use countersign_gateway::store::ApiKeyRecord;
use countersign_gateway::tls::TlsListener;
use countersign_gateway::{AppState, authority, serve};
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};

/// Countersign gateway: holds API-key withdrawals until enough people approve them
/// with hardware keys, and releases each exactly once.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, env = "COUNTERSIGN_CONFIG", default_value = "countersign.toml", global = true)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Manage API keys (run on the gateway host).
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Freeze every API key at once (break glass). Unfreezing needs an approved
    /// Unfreeze operation.
    Freeze {
        /// Why (recorded in the audit chain).
        #[arg(long)]
        reason: String,
    },
    /// Propose lifting the freeze: creates an Unfreeze operation that needs the
    /// admin quorum; keys stay frozen until it is approved.
    Unfreeze {
        /// The approver proposing it (never counts towards its quorum).
        #[arg(long)]
        proposer: String,
        /// Why it is safe again.
        #[arg(long)]
        reason: String,
    },
    /// Add an allowlisted destination (bootstrap path on the gateway host; audited).
    #[command(subcommand)]
    Allowlist(AllowlistCommand),
    /// Export, verify or checkpoint the audit chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Approvers and their enrollment codes.
    #[command(subcommand)]
    Approver(ApproverCommand),
    /// Print the approver registry signed by the gateway key (for settlement before
    /// a genesis exists).
    Registry,
    /// Draft the authority chain's genesis from the people, keys, API keys,
    /// allowlist and policy here, or show it: every key it lists signs it
    /// (`countersign genesis sign`), then settlement pins its hash. From the draft
    /// on, the host grants no power (no bootstrap codes, API keys, allowlist entries
    /// or revocations from here).
    Genesis {
        /// Discard an unsealed draft (people or policy changed before all signed).
        #[arg(long)]
        reset: bool,
    },
    /// Check every invariant on the database: nothing released twice or without a
    /// verified quorum, every decision a verified assertion, counters increasing,
    /// the audit chain whole and covering every state change. Exits non-zero on any
    /// violation.
    Check {
        /// Operations clients were told were accepted: JSON lines `{"id", "digest"}`.
        #[arg(long)]
        accepted: Option<PathBuf>,
        /// Release documents settlement received: one JSON document per line.
        #[arg(long)]
        settled: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ApproverCommand {
    /// Issue a single-use enrollment code. Without --by it is a bootstrap code (the
    /// key counts at once), accepted only until enough admins exist to approve
    /// enrollments; with --by, the enrolled key counts after an ApproverEnroll
    /// operation proposed by that admin is approved by the admin quorum.
    Code {
        /// Person id, e.g. alice.
        #[arg(long)]
        id: String,
        /// Name colleagues know.
        #[arg(long)]
        name: String,
        /// Roles: approver, admin (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', required = true)]
        role: Vec<String>,
        /// Groups used by policy quorums (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        group: Vec<String>,
        /// The admin proposing this enrollment.
        #[arg(long)]
        by: Option<String>,
    },
    /// Revoke a person: their keys stop counting at once, sessions end.
    Revoke {
        /// Person id.
        id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Algorithm {
    /// Ed25519: give the key's public half with --public-key (preferred).
    Ed25519,
    /// HMAC-SHA256: the secret is printed once and never stored.
    Hmac,
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create a key.
    Create {
        /// Key id, e.g. key_mm1.
        #[arg(long)]
        id: String,
        /// The person responsible for it (never counts as an approver of its withdrawals).
        #[arg(long)]
        owner: String,
        /// What it is for.
        #[arg(long, default_value = "")]
        label: String,
        /// How it signs.
        #[arg(long, value_enum)]
        algorithm: Algorithm,
        /// Ed25519 public key, base64url (32 bytes). It may begin with '-'.
        #[arg(long, allow_hyphen_values = true)]
        public_key: Option<String>,
        /// Scopes: read, withdraw (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// Allowed source CIDR blocks (repeat or comma-separate); none allows nothing.
        #[arg(long = "allow-ip", value_delimiter = ',')]
        allow_ip: Vec<String>,
        /// Refuse single withdrawals worth more than this (reference currency).
        #[arg(long)]
        max_value: Option<String>,
        /// Expire after this many days.
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// List keys.
    List,
    /// Revoke a key at once.
    Revoke {
        /// Key id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum AllowlistCommand {
    /// Add an address.
    Add {
        /// Account.
        #[arg(long)]
        account: String,
        /// Network.
        #[arg(long)]
        network: String,
        /// Address.
        #[arg(long)]
        address: String,
        /// Memo / destination tag, on networks that have one (XRP, XLM, ...): the
        /// entry matches only withdrawals with exactly this memo.
        #[arg(long)]
        memo: Option<String>,
        /// Label.
        #[arg(long, default_value = "")]
        label: String,
    },
}

/// An address with its memo, as people read it.
fn describe(d: &Destination) -> String {
    match &d.memo {
        Some(memo) => format!("{} (memo {memo})", d.address),
        None => d.address.clone(),
    }
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print the chain as JSON lines.
    Export,
    /// Sign a checkpoint of the current head now.
    Checkpoint,
    /// Verify an export offline; names the first broken entry.
    Verify {
        /// The export file.
        file: PathBuf,
        /// The gateway public key (base64url; it may begin with '-'); by default,
        /// this gateway's.
        #[arg(long, allow_hyphen_values = true)]
        key: Option<String>,
    },
}

fn done(message: String) -> Result<(), String> {
    println!("{message}");
    Ok(())
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Verifying an export needs no database when the key is given.
    if let Command::Audit(AuditCommand::Verify { file, key: Some(key) }) = &cli.command {
        return verify_export(file, key);
    }
    let listen = config.listen;
    let state = match AppState::open(config, clock.clone()).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let now = clock.now();
    let result = match cli.command {
        Command::Serve => {
            let listener = match tokio::net::TcpListener::bind(listen).await {
                Ok(l) => l,
                Err(e) => return fail(format!("cannot listen on {listen}: {e}")),
            };
            let url = state.public_url();
            match state.tls.clone() {
                Some(tls) => {
                    tracing::info!(%url, pin = tls.pin(), database = %state.config.database_url(), "countersign gateway listening (HTTPS)");
                    match TlsListener::new(listener, &tls) {
                        Ok(l) => serve(state, l).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                None => {
                    if !listen.ip().is_loopback() {
                        tracing::warn!(%listen, "plain HTTP on a non-loopback address: put a TLS proxy in front or configure [tls]");
                    }
                    tracing::info!(%url, database = %state.config.database_url(), "countersign gateway listening (plain HTTP)");
                    serve(state, listener).await.map_err(|e| e.to_string())
                }
            }
        }
        Command::ApiKey(cmd) => api_key(&state, cmd, now).await,
        Command::Freeze { reason } => match state.store.freeze("host", &reason, now).await {
            Ok(true) => done("all API keys are frozen".into()),
            Ok(false) => {
                done("already frozen; recorded, and any unfreeze waiting for approval is cancelled".into())
            }
            Err(e) => Err(e.to_string()),
        },
        Command::Unfreeze { proposer, reason } => unfreeze(&state, &proposer, reason, now).await,
        Command::Allowlist(AllowlistCommand::Add { account, network, address, memo, label }) => {
            if let Err(e) = authority::host_may_grant(&state, "an allowlist entry").await {
                return fail(e.to_string());
            }
            allowlist_add(&state, &account, &network, Destination { address, memo }, &label, now).await
        }
        Command::Approver(ApproverCommand::Code { id, name, role, group, by }) => {
            approver_code(&state, &id, &name, &role, &group, by.as_deref(), now).await
        }
        Command::Approver(ApproverCommand::Revoke { id }) => {
            let id = ApproverId::new(id).map_err(|e| e.to_string());
            match id {
                Ok(id) => match countersign_gateway::approvers::revoke(&state, &id, "host", now).await {
                    Ok(true) => done(format!("revoked {id}: their keys no longer count")),
                    Ok(false) => Err(format!("no active approver {id}")),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e),
            }
        }
        Command::Genesis { reset } => genesis(&state, reset, now).await,
        Command::Registry => match countersign_gateway::approvers::registry(&state, now).await {
            Ok(r) => serde_json::to_string_pretty(&r).map_err(|e| e.to_string()).and_then(done),
            Err(e) => Err(e.to_string()),
        },
        Command::Check { accepted, settled, json } => {
            return check(&state, accepted.as_deref(), settled.as_deref(), json).await;
        }
        Command::Audit(AuditCommand::Export) => {
            state.store.audit_export().await.map(|t| print!("{t}")).map_err(|e| e.to_string())
        }
        Command::Audit(AuditCommand::Checkpoint) => {
            match state.store.checkpoint_if_due(state.keys.signing_key(), 0, now).await {
                Ok(Some(seq)) => done(format!("checkpoint signed at entry {seq}")),
                Ok(None) => done("nothing new since the last checkpoint".into()),
                Err(e) => Err(e.to_string()),
            }
        }
        Command::Audit(AuditCommand::Verify { file, key }) => {
            let own = BASE64URL_NOPAD.encode(state.keys.verifying_key().as_bytes());
            return verify_export(&file, key.as_deref().unwrap_or(&own));
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn check(
    state: &AppState,
    accepted: Option<&std::path::Path>,
    settled: Option<&std::path::Path>,
    json: bool,
) -> ExitCode {
    use countersign_gateway::invariants::{Evidence, check};
    fn lines(path: &std::path::Path) -> Result<Vec<serde_json::Value>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1)))
            .collect()
    }
    let mut evidence = Evidence::default();
    if let Some(path) = accepted {
        match lines(path) {
            Ok(values) => {
                for v in values {
                    match (v["id"].as_str(), v["digest"].as_str()) {
                        (Some(id), Some(d)) => evidence.accepted.push((id.to_owned(), d.to_owned())),
                        _ => {
                            return fail(format!(
                                "{}: each line needs \"id\" and \"digest\"",
                                path.display()
                            ));
                        }
                    }
                }
            }
            Err(e) => return fail(e),
        }
    }
    if let Some(path) = settled {
        match lines(path) {
            Ok(docs) => evidence.settled = Some(docs),
            Err(e) => return fail(e),
        }
    }
    match check(state, &evidence).await {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => return fail(e),
                }
            } else {
                println!("{report}");
            }
            if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => fail(format!("cannot check: {e}")),
    }
}

fn verify_export(file: &std::path::Path, key: &str) -> ExitCode {
    let key = match BASE64URL_NOPAD
        .decode(key.as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
    {
        Some(k) => k,
        None => return fail("--key must be a base64url Ed25519 public key"),
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    match countersign_core::audit::verify_export(&text, &key) {
        Ok(s) => {
            println!(
                "OK: {} entries, {} signed checkpoints, head {}, {} entries after the last checkpoint",
                s.entries, s.checkpoints, s.head, s.unsigned_tail
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("audit chain does not verify: {e}")),
    }
}

async fn genesis(state: &AppState, reset: bool, now: countersign_core::Timestamp) -> Result<(), String> {
    if reset {
        return match authority::reset(state, now).await {
            Ok(true) => done(
                "the genesis draft is discarded; run `countersign-gateway genesis` to draft it again".into(),
            ),
            Ok(false) => done("there is no genesis draft".into()),
            Err(e) => Err(e.to_string()),
        };
    }
    let status = authority::draft(state, now).await.map_err(|e| e.to_string())?;
    let mut out = format!(
        "genesis {}\n  {} people, {} API keys, {} allowlisted destinations, policy version {}\n",
        status.hash,
        status.genesis.people.len(),
        status.genesis.api_keys.len(),
        status.genesis.allowlist.len(),
        status.genesis.policy.version
    );
    if status.sealed {
        out.push_str(
            "  sealed: every key signed it. Settlement pins this hash (verify-certificate --genesis).",
        );
    } else {
        out.push_str(
            "  waiting for these keys to sign it (`countersign genesis sign` on each person's machine):",
        );
        for (who, key) in &status.missing {
            out.push_str(&format!("\n    {who}  {key}"));
        }
    }
    done(out)
}

async fn unfreeze(
    state: &AppState,
    proposer: &str,
    reason: String,
    now: countersign_core::Timestamp,
) -> Result<(), String> {
    let proposer = ApproverId::new(proposer).map_err(|e| e.to_string())?;
    let record = countersign_gateway::approvers::propose_unfreeze(state, &proposer, &reason, now)
        .await
        .map_err(|e| e.to_string())?;
    let fingerprint =
        countersign_core::Digest::of(&record.operation).map_err(|e| e.to_string())?.fingerprint();
    done(format!(
        "proposed unfreeze {} (fingerprint {fingerprint}); it needs the admin quorum before {}",
        record.operation.id, record.operation.expires_at
    ))
}

async fn approver_code(
    state: &AppState,
    id: &str,
    name: &str,
    roles: &[String],
    groups: &[String],
    by: Option<&str>,
    now: countersign_core::Timestamp,
) -> Result<(), String> {
    use countersign_core::operation::Role;
    let id = ApproverId::new(id).map_err(|e| e.to_string())?;
    let roles = roles
        .iter()
        .map(|r| match r.as_str() {
            "approver" => Ok(Role::Approver),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?} (approver, admin)")),
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    let groups =
        groups.iter().map(|g| g.parse()).collect::<Result<BTreeSet<_>, _>>().map_err(|e| format!("{e}"))?;
    let by = by.map(ApproverId::new).transpose().map_err(|e| e.to_string())?;
    let code = countersign_gateway::approvers::issue_enrollment_code(
        state,
        &id,
        name,
        &roles,
        &groups,
        by.as_ref(),
        now,
    )
    .await
    .map_err(|e| e.to_string())?;
    done(format!(
        "enrollment link for {id} (single use, valid {} s; give it to them over a channel you trust):\n{}",
        state.config.webauthn.enrollment_code_ttl_seconds,
        state.enrollment_link(&code)
    ))
}

async fn allowlist_add(
    state: &AppState,
    account: &str,
    network: &str,
    destination: Destination,
    label: &str,
    now: countersign_core::Timestamp,
) -> Result<(), String> {
    let account = AccountId::new(account).map_err(|e| e.to_string())?;
    let network = NetworkId::new(network).map_err(|e| e.to_string())?;
    let listed = state.config.asset_on(&network).ok_or_else(|| format!("no listed asset is on {network}"))?;
    countersign_gateway::intake::check_destination(listed, &network, &destination)
        .map_err(|e| e.to_string())?;
    match state.store.add_allowlist(&account, &network, &destination, label, "host", now).await {
        Ok(true) => done(format!("allowlisted {} for {account} on {network}", describe(&destination))),
        Ok(false) => done("already allowlisted".into()),
        Err(e) => Err(e.to_string()),
    }
}

async fn api_key(
    state: &AppState,
    cmd: ApiKeyCommand,
    now: countersign_core::Timestamp,
) -> Result<(), String> {
    if matches!(cmd, ApiKeyCommand::Create { .. }) {
        authority::host_may_grant(state, "a new API key").await.map_err(|e| e.to_string())?;
    }
    match cmd {
        ApiKeyCommand::Create {
            id,
            owner,
            label,
            algorithm,
            public_key,
            scope,
            allow_ip,
            max_value,
            expires_in_days,
        } => {
            let scopes = scope
                .iter()
                .map(|s| match s.as_str() {
                    "read" => Ok(Scope::Read),
                    "withdraw" => Ok(Scope::Withdraw),
                    other => Err(format!("unknown scope {other:?} (read, withdraw)")),
                })
                .collect::<Result<BTreeSet<_>, _>>()?;
            for cidr in &allow_ip {
                cidr.parse::<ipnet::IpNet>()
                    .map_err(|_| format!("--allow-ip {cidr:?} is not a CIDR block"))?;
            }
            let (algorithm, public_key, salt) = match algorithm {
                Algorithm::Ed25519 => {
                    let pk = public_key.ok_or("--public-key is required for ed25519")?;
                    BASE64URL_NOPAD
                        .decode(pk.as_bytes())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
                        .ok_or("--public-key must be a base64url Ed25519 public key")?;
                    (SigningAlgorithm::Ed25519, Some(pk), None)
                }
                Algorithm::Hmac => {
                    let salt = random_bytes::<16>().map_err(|e| e.to_string())?;
                    (SigningAlgorithm::HmacSha256, None, Some(HEXLOWER.encode(&salt)))
                }
            };
            let record = ApiKeyRecord {
                id: ApiKeyId::new(&id).map_err(|e| e.to_string())?,
                owner: ApproverId::new(&owner).map_err(|e| e.to_string())?,
                label,
                algorithm,
                public_key,
                hmac_salt: salt.clone(),
                scopes,
                ip_allowlist: allow_ip,
                max_reference_value: max_value
                    .map(|m| Amount::parse_lenient(&m))
                    .transpose()
                    .map_err(|e| e.to_string())?,
                created_at: now,
                expires_at: expires_in_days.map(|d| now.plus_seconds(d * 86_400)),
                revoked_at: None,
                last_used_at: None,
                last_used_ip: None,
            };
            state.store.insert_api_key(&record, now).await.map_err(|e| e.to_string())?;
            println!("created API key {id}");
            if let Some(salt) = salt {
                let salt = HEXLOWER.decode(salt.as_bytes()).map_err(|e| e.to_string())?;
                let secret = state.keys.api_key_secret(&id, &salt);
                println!(
                    "HMAC secret (shown once, store it in the bot's secret store): {}",
                    secret.to_base64url()
                );
            }
            Ok(())
        }
        ApiKeyCommand::List => {
            for k in state.store.api_keys().await.map_err(|e| e.to_string())? {
                let status = if k.revoked_at.is_some() { "revoked" } else { "active" };
                println!(
                    "{:<20} {:<8} owner={:<12} scopes={:?} allow={:?} last_used={}",
                    k.id.as_str(),
                    status,
                    k.owner.as_str(),
                    k.scopes,
                    k.ip_allowlist,
                    k.last_used_at.map_or("never".into(), |t| t.to_string())
                );
            }
            Ok(())
        }
        ApiKeyCommand::Revoke { id } => match state.store.revoke_api_key(&id, "host", now).await {
            Ok(true) => done(format!("revoked {id}")),
            Ok(false) => Err(format!("no active API key {id}")),
            Err(e) => Err(e.to_string()),
        },
    }
}
