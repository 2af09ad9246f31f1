//! The authority chain from the command line: show and sign the genesis, verify
//! the chain from a pinned genesis hash, and settlement's check of a release.

use std::path::PathBuf;

use clap::Subcommand;
use countersign_core::authority::{Authority, AuthorityDocument};
use serde_json::json;

use crate::{Ctx, Failure, Outcome, ceremony, gateway_key_from, local, read};

#[derive(Debug, Subcommand)]
pub enum GenesisCommand {
    /// The genesis on the gateway: its hash (computed here), who it names, who has
    /// yet to sign.
    Show,
    /// Sign the genesis with your key. Compare its hash with the other founding
    /// people over a channel you trust first, and give that hash here.
    Sign {
        /// The genesis hash you compared (hex).
        #[arg(long)]
        hash: String,
    },
}

/// Group a hex hash in fours for reading aloud.
pub fn grouped(hash: &str) -> String {
    hash.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

pub async fn genesis(ctx: &Ctx, cmd: GenesisCommand) -> Outcome {
    let draft = match cmd {
        GenesisCommand::Show => ctx.client()?.1.genesis().await?,
        GenesisCommand::Sign { hash } => {
            let (mut profile, client, session) = ctx.session()?;
            let draft = client
                .sign_genesis(&session, &profile.approver, &hash, ctx.key().await?, &ceremony())
                .await?;
            // The hash this person compared and signed is the one their profile pins.
            profile.genesis = Some(draft.hash.clone());
            profile.save(&ctx.dir).map_err(local)?;
            draft
        }
    };
    let g = &draft.genesis;
    let mut lines = vec![
        format!("genesis {}", grouped(&draft.hash)),
        format!("  relying party {} ({})", g.rp.id, g.rp.origins.join(", ")),
        format!(
            "  policy version {}, {} API keys, {} allowlisted destinations",
            g.policy.version,
            g.api_keys.len(),
            g.allowlist.len()
        ),
    ];
    for p in &g.people {
        let roles: Vec<String> = p.roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect();
        let groups: Vec<&str> = p.groups.iter().map(|x| x.as_str()).collect();
        lines.push(format!(
            "  {} ({}): {} in {}, {} key(s)",
            p.id,
            p.display_name,
            roles.join("+"),
            groups.join(","),
            p.keys.len()
        ));
    }
    if draft.sealed {
        lines.push("SEALED: every key signed it. Settlement pins this hash.".into());
    } else {
        lines.push(format!("waiting for {} key(s):", draft.missing.len()));
        lines.extend(draft.missing.iter().map(|(who, key)| format!("  {who}  {key}")));
    }
    let missing: Vec<_> =
        draft.missing.iter().map(|(a, c)| json!({"approver": a, "credential_id": c})).collect();
    ctx.print(
        lines.join("\n"),
        json!({"hash": draft.hash, "sealed": draft.sealed, "genesis": g, "missing": missing}),
    );
    Ok(())
}

/// Verify the gateway's chain from the genesis given (pinned in the profile when
/// it pins none yet) or the one the profile pins; print its head and links.
pub async fn chain(ctx: &Ctx, given: Option<&str>) -> Outcome {
    let (mut profile, client) = ctx.client()?;
    let pinned = match (given.map(|g| g.trim().to_ascii_lowercase()), &profile.genesis) {
        (Some(g), Some(p)) if &g != p => {
            return Err(Failure(
                5,
                format!("your profile pins genesis {p}, not {g}: compare it again with your admins"),
            ));
        }
        (Some(g), _) => g,
        (None, Some(p)) => p.clone(),
        (None, None) => return Err(local("give --genesis <hash> (the hash your admins compared) to pin it")),
    };
    let authority = client.verified_authority(&pinned).await?;
    if profile.genesis.is_none() {
        profile.genesis = Some(pinned);
        profile.save(&ctx.dir).map_err(local)?;
    }
    let mut lines = vec![format!("genesis {}", grouped(authority.genesis_hash()))];
    let doc = client.authority().await?;
    for link in &doc.links {
        let kind = countersign_core::canonical::decode(link.operation.as_bytes())
            .map(|op| op.kind().to_string())
            .unwrap_or_else(|e| format!("undecodable: {e}"));
        let by: Vec<&str> = link.approvals.iter().map(|a| a.approver.as_str()).collect();
        lines.push(format!(
            "  link {} {kind} at {}, approved by {}",
            link.index,
            link.applied_at,
            by.join(", ")
        ));
    }
    let head = authority.head();
    lines.push(format!("head {} {}: verified from the pinned genesis", head.index, grouped(&head.hash)));
    ctx.print(lines.join("\n"), json!({"verified": true, "head": head, "links": doc.links.len()}));
    Ok(())
}

/// Where settlement's trust comes from: the pinned genesis and the chain, or
/// (before a deployment has a genesis) a registry and policy.
pub struct Trusted {
    pub genesis: Option<String>,
    pub authority: Option<PathBuf>,
    pub registry: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub gateway_key: String,
}

pub fn verify_certificate(ctx: &Ctx, file: &std::path::Path, t: Trusted) -> Outcome {
    let key = gateway_key_from(&t.gateway_key)?;
    let document = read(file)?;
    let refuse = |e: countersign_core::release::ReleaseError| {
        Failure(5, format!("REFUSE the transfer: {}: {e}", e.code()))
    };
    let op = match (t.genesis, t.authority, t.registry, t.policy) {
        (Some(pinned), Some(chain), None, None) => {
            let doc: AuthorityDocument = serde_json::from_slice(&read(&chain)?)
                .map_err(|e| local(format!("{}: {e}", chain.display())))?;
            let authority = Authority::from_document(pinned.trim(), &doc)
                .map_err(|e| Failure(5, format!("the authority chain does not verify: {}: {e}", e.code())))?;
            countersign_core::release::verify_release_from_genesis(&document, &key, &authority)
                .map_err(refuse)?
        }
        (None, None, Some(registry), Some(policy)) => {
            let signed: countersign_core::certificate::SignedRegistry =
                serde_json::from_slice(&read(&registry)?)
                    .map_err(|e| local(format!("{}: {e}", registry.display())))?;
            let registry = signed
                .verify(&key)
                .map_err(|e| Failure(5, format!("the registry is not signed by this gateway key: {e}")))?;
            let policy: countersign_core::Policy = serde_json::from_slice(&read(&policy)?)
                .map_err(|e| local(format!("{}: {e}", policy.display())))?;
            let trust = countersign_core::release::Trust { gateway: &key, policy: &policy, registry };
            countersign_core::release::verify_release(&document, &trust).map_err(refuse)?
        }
        _ => {
            return Err(local(
                "give --genesis HASH --authority FILE (from GET /v1/authority), or, before a genesis, --registry and --policy",
            ));
        }
    };
    ctx.print(format!("OK: {} may be settled", op.id), json!({"verified": true, "operation": op}));
    Ok(())
}
