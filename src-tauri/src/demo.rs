//! Demo mode (`--demo`, cargo feature `demo`): an embedded gateway, a trading bot
//! sending realistic withdrawals, and two approvers on SOFTWARE keys — you (alice,
//! in this window) and a colleague (carol) who approves a few seconds after you.
//! The founding people (erin the admin, alice, carol, bob who owns the bot's key)
//! sign the authority chain's genesis with their software keys at start.

use std::collections::BTreeSet;
use std::time::Duration;

use countersign_client::{Client, Profile, Update};
use countersign_core::Decision;
use countersign_core::operation::Role;
use countersign_gateway::demo::{Bot, Embedded};
use countersign_keys::Ceremony;
use countersign_softkey::SoftKey;

/// The demo keys' PIN, shown in the window's banner.
pub const PIN: &str = "4821";

/// What the window needs from the demo.
pub struct Setup {
    pub profile: Profile,
    pub key: SoftKey,
    pub pin: String,
}

/// The colleague (and the demo's enrollment) at a software key: types the PIN.
fn ceremony() -> Ceremony {
    countersign_softkey::SimulatedPerson::new(PIN).ceremony()
}

fn fail(e: impl std::fmt::Display) -> Box<dyn std::error::Error> {
    e.to_string().into()
}

async fn enroll(
    gw: &Embedded,
    client: &Client,
    id: &str,
    roles: &[Role],
    groups: &[&str],
    key: &SoftKey,
) -> Result<(), Box<dyn std::error::Error>> {
    let now = countersign_gateway::clock::Clock::now(gw.state.clock.as_ref());
    let code = countersign_gateway::approvers::issue_enrollment_code(
        &gw.state,
        &id.parse().map_err(fail)?,
        id,
        &roles.iter().copied().collect(),
        &groups.iter().map(|g| g.parse()).collect::<Result<BTreeSet<_>, _>>().map_err(fail)?,
        None,
        now,
    )
    .await
    .map_err(fail)?;
    client.enroll(&code, &format!("{id}'s software key"), key.clone(), &ceremony()).await.map_err(fail)?;
    Ok(())
}

/// Start everything; the gateway, bot and colleague run until the app closes.
pub async fn start() -> Result<Setup, Box<dyn std::error::Error>> {
    let dir = std::env::var_os("COUNTERSIGN_DEMO_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("countersign-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir)?;
    let gw = countersign_gateway::demo::start(&dir).await.map_err(fail)?;
    let client = Client::new(&gw.base, None).map_err(fail)?;
    let alice = SoftKey::create(&dir.join("alice-softkey.json"), "alice's software key").map_err(fail)?;
    alice.set_pin(PIN).map_err(fail)?;
    alice.set_presence(countersign_softkey::Presence::After(Duration::from_millis(900)));
    let carol = SoftKey::create(&dir.join("carol-softkey.json"), "carol's software key").map_err(fail)?;
    carol.set_pin(PIN).map_err(fail)?;
    let erin = SoftKey::create(&dir.join("erin-softkey.json"), "erin's software key").map_err(fail)?;
    erin.set_pin(PIN).map_err(fail)?;
    enroll(&gw, &client, "erin", &[Role::Admin], &["admins"], &erin).await?;
    enroll(&gw, &client, "alice", &[Role::Approver], &["traders"], &alice).await?;
    enroll(&gw, &client, "carol", &[Role::Approver], &["traders"], &carol).await?;
    // bob owns the bot's API key (so he never approves its withdrawals).
    let bob = SoftKey::create(&dir.join("bob-softkey.json"), "bob's software key").map_err(fail)?;
    bob.set_pin(PIN).map_err(fail)?;
    enroll(&gw, &client, "bob", &[Role::Approver], &["traders"], &bob).await?;
    let bot = Bot::create(&gw, "key_bot1").await.map_err(fail)?;
    let genesis = found_the_chain(
        &gw,
        &client,
        &[("erin", &erin), ("alice", &alice), ("carol", &carol), ("bob", &bob)],
    )
    .await?;
    backlog(&gw, &bot).await?;

    eprintln!(
        "\nCountersign demo — SOFTWARE KEYS, demo only.\n\
         gateway  {} (SQLite in {})\n\
         bot      key_bot1 sends a withdrawal every 4 s: small ones are released, large ones wait for two traders\n\
         you      alice, in the window: log in and approve with PIN {PIN}\n\
         carol    your colleague approves 3 s after you\n\
         erin     the demo admin (her software key: erin-softkey.json in the demo directory)\n\
         genesis  {genesis}: signed by the four SOFTWARE keys; settlement pins it\n\
         stop     close the window (or Ctrl-C here)\n",
        gw.base,
        dir.display()
    );
    tauri::async_runtime::spawn(bot.run(Duration::from_secs(4), |n, answer| {
        tracing::info!(n, state = %answer["state"], "demo bot");
    }));
    let colleague = client.clone();
    tauri::async_runtime::spawn(async move {
        if let Err(e) = colleague_approves(colleague, carol).await {
            tracing::warn!(error = %e, "demo colleague stopped");
        }
    });
    Ok(Setup {
        profile: Profile {
            gateway: gw.base.clone(),
            pin: None,
            approver: "alice".into(),
            relying_party: Some(client.relying_party().await.map_err(fail)?.clone()),
            // alice compared it when she signed it at the demo's start.
            genesis: Some(genesis.clone()),
        },
        key: alice,
        pin: PIN.into(),
    })
}

/// The founding people of the demo sign the authority chain's genesis with their
/// SOFTWARE keys (each through the same CTAP2 path as a USB key); returns its hash.
async fn found_the_chain(
    gw: &Embedded,
    client: &Client,
    founders: &[(&str, &SoftKey)],
) -> Result<String, Box<dyn std::error::Error>> {
    let now = countersign_gateway::clock::Clock::now(gw.state.clock.as_ref());
    let hash = countersign_gateway::authority::draft(&gw.state, now).await.map_err(fail)?.hash;
    for (id, key) in founders {
        let session = client.login(id, (*key).clone(), &ceremony()).await.map_err(fail)?;
        client.sign_genesis(&session, id, &hash, (*key).clone(), &ceremony()).await.map_err(fail)?;
    }
    Ok(hash)
}

/// `COUNTERSIGN_DEMO_BACKLOG=N` (the desktop benchmark): start with N withdrawals
/// waiting, copies of one real held withdrawal, as a busy desk's inbox would be.
async fn backlog(gw: &Embedded, bot: &Bot) -> Result<(), Box<dyn std::error::Error>> {
    let Some(n) = std::env::var("COUNTERSIGN_DEMO_BACKLOG").ok().and_then(|v| v.parse::<i64>().ok()) else {
        return Ok(());
    };
    if n < 1 {
        return Ok(());
    }
    let (asset, amount, to) = Bot::order(4); // a large one: held for two traders
    let answer = bot.withdraw(asset, &amount, &to, "demo-backlog").await.map_err(fail)?;
    let id = answer["operation"]["id"].as_str().ok_or("the backlog's withdrawal was not accepted")?;
    countersign_gateway::demo::copy_operation(&gw.state, id, "op_backlog", 1, n - 1, 1, 0)
        .await
        .map_err(fail)?;
    eprintln!("backlog  {n} withdrawals waiting (copies of {id})");
    Ok(())
}

/// Carol approves whatever is still pending a few seconds after someone decided on it.
async fn colleague_approves(client: Client, key: SoftKey) -> Result<(), Box<dyn std::error::Error>> {
    let session = client.login("carol", key.clone(), &ceremony()).await.map_err(fail)?;
    let mut events = client.events(&session, None);
    while let Some(update) = events.recv().await {
        let Update::Event(e) = update else { continue };
        if e.event != "decision.counted" {
            continue;
        }
        let Some(op) = e.data["operation"].as_str().map(str::to_owned) else { continue };
        tokio::time::sleep(Duration::from_secs(3)).await;
        let still_pending =
            client.pending(&session).await.map_err(fail)?.iter().any(|o| o.operation.id.to_string() == op);
        if !still_pending {
            continue;
        }
        match client.challenge(&session, &op, Decision::Approve).await {
            Ok(challenge) => {
                if let Err(e) =
                    client.sign_decision(&session, challenge, None, key.clone(), &ceremony()).await
                {
                    tracing::info!(error = %e, %op, "carol could not approve");
                }
            }
            Err(e) => tracing::info!(error = %e, %op, "carol skipped"),
        }
    }
    Ok(())
}
