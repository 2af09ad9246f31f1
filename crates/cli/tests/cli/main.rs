//! The `countersign` binary as a subprocess against a gateway on port 0 (HTTPS,
//! pinned), with software keys: enroll, login, pending, show, approve, reject,
//! freeze, verify a certificate; each error path asserts its message and exit code;
//! and the session in a real Secret Service (gnome-keyring under dbus-run-session).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

#[allow(dead_code, unused_imports)]
#[path = "../../../gateway/tests/gateway/support.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use countersign_core::operation::Role;
use countersign_softkey::SoftKey;
use serde_json::Value;
use support::*;

const PIN: &str = "4821";

struct Person {
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl Person {
    fn new() -> Person {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("softkey.json");
        SoftKey::create(&key, "cli test key").unwrap().set_pin(PIN).unwrap();
        Person { dir, key }
    }

    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    /// Run `countersign` with this person's profile and software key; `stdin` is
    /// what they type (PINs).
    fn run(&self, args: &[&str], stdin: &str) -> Out {
        run_with(&self.profile(), Some(&self.key), args, stdin)
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

fn run_with(profile: &Path, key: Option<&Path>, args: &[&str], stdin: &str) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_countersign"));
    cmd.arg("--profile-dir").arg(profile).args(["--session-store", "file"]);
    if let Some(k) = key {
        cmd.arg("--soft-key").arg(k);
    }
    let mut child = cmd
        .args(args)
        .env_remove("COUNTERSIGN_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Subprocesses block: run them off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn enrolled(gw: &Gateway, id: &'static str) -> Person {
    let l = link(gw, id).await;
    enrolled_with(l, id).await
}

async fn enrolled_with(l: String, id: &'static str) -> Person {
    let person = Person::new();
    blocking(move || {
        let out = person.run(&["enroll", &l, "--label", "laptop"], &format!("{PIN}\n"));
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains(&format!("Enrolled a key for {id}")), "{out:?}");
        assert!(out.stderr.contains("SOFTWARE KEY"), "the software key is announced: {out:?}");
        let out = person.run(&["login"], &format!("{PIN}\n"));
        assert_eq!(out.code, 0, "{out:?}");
        person
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_work_from_the_terminal_and_settlement_verifies_offline() {
    let gw = Gateway::start_tls(Db::Sqlite).await;
    let alice = enrolled(&gw, "alice").await;
    let carol = enrolled(&gw, "carol").await;
    let key = gw.api_key("key_cli", KeySpec::default()).await;
    let id = gw.withdraw(&key, &eth("12.5")).await.op_id();
    let other = gw.withdraw(&key, &eth("13")).await.op_id();

    let (alice, carol) = {
        let id = id.clone();
        blocking(move || {
            let out = alice.run(&["pending", "--json"], "");
            assert_eq!(out.code, 0, "{out:?}");
            let listed: Value = serde_json::from_str(&out.stdout).unwrap();
            assert_eq!(listed.as_array().unwrap().len(), 2, "{out:?}");

            let out = alice.run(&["show", &id], "");
            assert_eq!(out.code, 0, "{out:?}");
            assert!(out.stdout.contains("action.details.amount: 12.5"), "{out:?}");
            assert!(out.stdout.contains("fingerprint: "), "{out:?}");

            let out = alice.run(&["approve", &id], &format!("{PIN}\n"));
            assert_eq!(out.code, 0, "{out:?}");
            assert!(out.stdout.contains("the operation is pending"), "{out:?}");
            assert!(out.stderr.contains("Compare the fingerprint"), "{out:?}");
            // Carol sees alice's approval, its signature checked by her own CLI.
            let out = carol.run(&["show", &id], "");
            assert_eq!(out.code, 0, "{out:?}");
            assert!(out.stdout.contains("decisions (each signature checked here):"), "{out:?}");
            assert!(out.stdout.contains("alice approve at "), "{out:?}");
            assert!(out.stdout.contains("[signed by their key]"), "{out:?}");
            let out = carol.run(&["approve", &id, "--json"], &format!("{PIN}\n"));
            assert_eq!(out.code, 0, "{out:?}");
            assert_eq!(serde_json::from_str::<Value>(&out.stdout).unwrap()["state"], "released");
            (alice, carol)
        })
        .await
    };

    // One rejection vetoes.
    let out = {
        let other = other.clone();
        blocking(move || {
            carol.run(&["reject", &other, "--reason", "unknown destination"], &format!("{PIN}\n"))
        })
        .await
    };
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("the operation is rejected"), "{out:?}");

    // Settlement verifies the release offline; a changed document is refused.
    let dir = tempfile::tempdir().unwrap();
    let ledger = gw.state.store.ledger().await.unwrap();
    let entry = ledger.iter().find(|l| l.operation_id == id).unwrap();
    let doc = dir.path().join("release.json");
    std::fs::write(&doc, serde_json::to_vec(&entry.certificate).unwrap()).unwrap();
    let registry = dir.path().join("registry.json");
    let reg: Value =
        gw.http.get(format!("{}/v1/registry", gw.base)).send().await.unwrap().json().await.unwrap();
    std::fs::write(&registry, reg.to_string()).unwrap();
    let policy_file = dir.path().join("policy.json");
    std::fs::write(&policy_file, serde_json::to_vec(&policy()).unwrap()).unwrap();
    let gateway_key = data_encoding::BASE64URL_NOPAD.encode(gw.state.keys.verifying_key().as_bytes());
    let verify = {
        let (doc, registry, policy_file, gateway_key) =
            (doc.clone(), registry.clone(), policy_file.clone(), gateway_key.clone());
        move |profile: PathBuf| {
            run_with(
                &profile,
                None,
                &[
                    "verify-certificate",
                    doc.to_str().unwrap(),
                    "--registry",
                    registry.to_str().unwrap(),
                    "--policy",
                    policy_file.to_str().unwrap(),
                    "--gateway-key",
                    &gateway_key,
                ],
                "",
            )
        }
    };
    let profile = dir.path().join("settlement");
    let out = blocking({
        let (verify, profile) = (verify.clone(), profile.clone());
        move || verify(profile)
    })
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains(&format!("OK: {id} may be settled")), "{out:?}");
    let tampered = serde_json::to_string(&entry.certificate).unwrap().replace("12.5", "125");
    std::fs::write(&doc, tampered).unwrap();
    let out = blocking(move || verify(profile)).await;
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("REFUSE the transfer"), "{out:?}");

    // Break glass.
    let out = blocking(move || alice.run(&["freeze", "--reason", "drill"], &format!("{PIN}\n"))).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Every API key is frozen"), "{out:?}");
    assert_eq!(gw.withdraw(&key, &eth("0.1")).await.code(), "auth.frozen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_invite_through_the_quorum_and_export_the_audit_chain() {
    let gw = Gateway::start_tls(Db::Sqlite).await;
    let admin = [Role::Admin, Role::Approver];
    let alice =
        enrolled_with(bootstrap_link(&gw, "alice", &admin, &["admins", "traders"]).await, "alice").await;
    let dave = enrolled_with(bootstrap_link(&gw, "dave", &admin, &["admins", "traders"]).await, "dave").await;
    let erin = enrolled_with(bootstrap_link(&gw, "erin", &admin, &["admins", "traders"]).await, "erin").await;
    let gateway_key = data_encoding::BASE64URL_NOPAD.encode(gw.state.keys.verifying_key().as_bytes());
    let export = alice.dir.path().join("audit.jsonl");
    blocking(move || {
        let out = alice.run(
            &[
                "admin", "invite", "--id", "carol", "--name", "Carol", "--role", "approver", "--group",
                "traders",
            ],
            "",
        );
        assert_eq!(out.code, 0, "{out:?}");
        let link = out.stdout.lines().find(|l| l.starts_with("countersign://enroll?")).unwrap().to_owned();

        // Carol enrolls, but her key waits for the admin quorum.
        let carol = Person::new();
        let out = carol.run(&["enroll", &link], &format!("{PIN}\n"));
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("pending_approval"), "{out:?}");
        // Not active yet: the gateway's login challenge (the same for anyone, so it
        // tells nobody who exists) offers no credential her key holds.
        let out = carol.run(&["login"], &format!("{PIN}\n"));
        assert_eq!(out.code, 3, "not active yet: {out:?}");
        assert!(out.stderr.contains("key.credential_not_found"), "{out:?}");

        // Two other admins approve the ApproverEnroll operation.
        let out = dave.run(&["pending", "--json"], "");
        let pending: Value = serde_json::from_str(&out.stdout).unwrap();
        let enroll = pending
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["operation"]["action"]["kind"] == "approver_enroll")
            .unwrap_or_else(|| panic!("{out:?}"));
        let id = enroll["operation"]["id"].as_str().unwrap().to_owned();
        assert_eq!(dave.run(&["approve", &id], &format!("{PIN}\n")).code, 0);
        let out = erin.run(&["approve", &id], &format!("{PIN}\n"));
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("released"), "{out:?}");
        let out = carol.run(&["login"], &format!("{PIN}\n"));
        assert_eq!(out.code, 0, "active after the quorum: {out:?}");

        // Anyone logged in reads the policy in force.
        let out = carol.run(&["admin", "policy-show", "--json"], "");
        assert_eq!(out.code, 0, "{out:?}");
        let policy: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(policy["admin_quorum"]["groups"][0]["group"], "admins", "{out:?}");

        // Admins see people and keys; a non-admin is refused.
        let out = alice.run(&["admin", "approvers"], "");
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("carol  Carol") && out.stdout.contains("SOFTWARE KEY"), "{out:?}");
        let out = carol.run(&["admin", "approvers"], "");
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("admin.not_an_admin"), "{out:?}");

        // A change proposed for the quorum.
        let out = alice.run(
            &[
                "admin",
                "allowlist-add",
                "--account",
                "acct_main",
                "--network",
                "ethereum",
                "--address",
                "0x8ba1f109551bD432803012645Ac136ddd64DBA72",
                "--label",
                "cold wallet",
            ],
            "",
        );
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("Proposed: ") && out.stdout.contains("allowlist_add"), "{out:?}");

        // The audit chain, exported and verified offline.
        let out = alice.run(&["admin", "audit-export", "--out", export.to_str().unwrap()], "");
        assert_eq!(out.code, 0, "{out:?}");
        let out =
            alice.run(&["audit", "verify", export.to_str().unwrap(), "--gateway-key", &gateway_key], "");
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.starts_with("OK: "), "{out:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_created_through_the_quorum_and_revoked_by_one_admin() {
    use ed25519_dalek::SigningKey;
    let gw = Gateway::start_tls(Db::Sqlite).await;
    let admin = [Role::Admin, Role::Approver];
    let alice =
        enrolled_with(bootstrap_link(&gw, "alice", &admin, &["admins", "traders"]).await, "alice").await;
    let dave = enrolled_with(bootstrap_link(&gw, "dave", &admin, &["admins", "traders"]).await, "dave").await;
    let erin = enrolled_with(bootstrap_link(&gw, "erin", &admin, &["admins", "traders"]).await, "erin").await;
    // The bot makes its key pair where it runs; only the public half is proposed.
    let bot = SigningKey::from_bytes(&[7u8; 32]);
    let public_key = data_encoding::BASE64URL_NOPAD.encode(bot.verifying_key().as_bytes());
    let (alice, erin) = blocking(move || {
        let create = |key: &str| {
            alice.run(
                &[
                    "admin",
                    "api-key-create",
                    "--id",
                    "key_mm2",
                    "--owner",
                    "dave",
                    "--label",
                    "market maker 2, Frankfurt",
                    "--public-key",
                    key,
                    "--scope",
                    "read,withdraw",
                    "--allow-ip",
                    "127.0.0.0/8",
                    "--max-value",
                    "50000",
                    "--json",
                ],
                "",
            )
        };
        // Not an Ed25519 public key: refused before anyone is asked to approve.
        let out = create("AAAA");
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("public_key"), "{out:?}");
        // Nor a key nobody answers for, or one that would be dead on arrival.
        let base = ["admin", "api-key-create", "--id", "key_x", "--label", "x", "--public-key", &public_key];
        let out = alice.run(&[&base[..], &["--owner", "nobody", "--scope", "read"]].concat(), "");
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("api_key.unknown_owner"), "{out:?}");
        let expired = ["--owner", "dave", "--scope", "read", "--expires-at", "2020-01-01T00:00:00Z"];
        let out = alice.run(&[&base[..], &expired].concat(), "");
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("api_key.expired"), "{out:?}");

        let out = create(&public_key);
        assert_eq!(out.code, 0, "{out:?}");
        let op: Value = serde_json::from_str(&out.stdout).unwrap();
        let details = &op["operation"]["action"]["details"];
        assert_eq!(details["public_key"], public_key.as_str(), "approvers see the exact key: {out:?}");
        assert_eq!(details["max_reference_value"], "50000");
        let id = op["operation"]["id"].as_str().unwrap().to_owned();

        let out = alice.run(&["admin", "api-keys"], "");
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("No API keys."), "nothing exists before the quorum: {out:?}");

        assert_eq!(dave.run(&["approve", &id], &format!("{PIN}\n")).code, 0);
        let out = erin.run(&["approve", &id], &format!("{PIN}\n"));
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("released"), "{out:?}");

        let out = alice.run(&["admin", "api-keys"], "");
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout.contains("key_mm2  ed25519  owner dave") && out.stdout.contains("max 50000"),
            "{out:?}"
        );
        let out = create(&public_key);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("api_key.exists"), "{out:?}");
        (alice, erin)
    })
    .await;

    // The approved key works, exactly as proposed.
    let key = TestKey { id: "key_mm2".into(), secret: Secret::Ed25519(bot) };
    let r = gw.withdraw(&key, &eth("0.5")).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.state(), "released", "{r:?}");
    let r = gw.withdraw(&key, &eth("20")).await;
    assert_eq!(r.state(), "denied", "the proposed per-request limit holds: {r:?}");

    // One admin revokes it at once; a non-admin cannot.
    blocking(move || {
        let out = erin.run(&["admin", "api-key-revoke", "key_nope"], "");
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("api_key.unknown"), "{out:?}");
        let out = alice.run(&["admin", "api-key-revoke", "key_mm2"], "");
        assert_eq!(out.code, 0, "{out:?}");
        let out = alice.run(&["admin", "api-keys"], "");
        assert!(out.stdout.contains("REVOKED"), "{out:?}");
    })
    .await;
    let r = gw.withdraw(&key, &eth("0.5")).await;
    assert_eq!(r.code(), "auth.key_revoked", "{r:?}");
    let events = gw.audit_events().await;
    for e in ["api_key.created", "api_key.revoked"] {
        assert!(events.iter().any(|x| x == e), "{e} audited: {events:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_has_its_message_and_exit_code() {
    let gw = Gateway::start_tls(Db::Sqlite).await;
    let person = Person::new();
    let good = link(&gw, "alice").await;

    // Pinned key mismatch: exit 4, nothing sent.
    let pin_start = good.find("&pin=").unwrap();
    let forged = format!("{}&pin=sha256%2FAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &good[..pin_start]);
    // Unknown code: exit 2 with the gateway's code.
    let code_start = good.find("&code=").unwrap() + "&code=".len();
    let wrong_code = format!("{}ZZ{}", &good[..code_start], &good[code_start + 2..]);
    let person = blocking(move || {
        let out = person.run(&["enroll", &forged], &format!("{PIN}\n"));
        assert_eq!(out.code, 4, "{out:?}");
        assert!(out.stderr.contains("client.pin_mismatch"), "{out:?}");
        let out = person.run(&["enroll", &wrong_code], &format!("{PIN}\n"));
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("enroll.unknown_code"), "{out:?}");
        // Not enrolled yet: a local error.
        let out = person.run(&["pending"], "");
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("countersign enroll"), "{out:?}");
        person
    })
    .await;

    // An expired code.
    gw.clock.advance(i64::try_from(gw.state.config.webauthn.enrollment_code_ttl_seconds).unwrap() + 1);
    let expired = good.clone();
    let person = blocking(move || {
        let out = person.run(&["enroll", &expired], &format!("{PIN}\n"));
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("enroll.expired_code"), "{out:?}");
        person
    })
    .await;

    // A fresh code, but the person gives up at the PIN prompt (end of input): a key
    // error, exit 3.
    let fresh = link(&gw, "bob").await;
    let person = blocking(move || {
        let out = person.run(&["enroll", &fresh], "");
        assert_eq!(out.code, 3, "{out:?}");
        assert!(out.stderr.contains("key.cancelled"), "{out:?}");
        person
    })
    .await;

    // No key at all (the software key's file is gone): exit 3.
    let fresh = link(&gw, "dave").await;
    blocking(move || {
        std::fs::remove_file(&person.key).unwrap();
        let out = person.run(&["enroll", &fresh], &format!("{PIN}\n"));
        assert_eq!(out.code, 3, "{out:?}");
        assert!(out.stderr.contains("key.device"), "{out:?}");
    })
    .await;

    // The gateway is down: exit 4.
    let down = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    std::fs::write(
        down.path().join("profile.json"),
        serde_json::json!({"gateway": format!("http://127.0.0.1:{port}"), "pin": null, "approver": "alice"})
            .to_string(),
    )
    .unwrap();
    std::fs::write(down.path().join("session"), "token").unwrap();
    let out = blocking(move || run_with(down.path(), None, &["pending"], "")).await;
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.contains("client.unreachable"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_lives_in_the_secret_service_not_in_a_file() {
    for tool in ["dbus-run-session", "gnome-keyring-daemon"] {
        let found =
            Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success();
        assert!(found, "{tool} is missing: scripts/setup installs it (dbus-daemon, gnome-keyring)");
    }
    let gw = Gateway::start_tls(Db::Sqlite).await;
    let person = Person::new();
    let l = link(&gw, "alice").await;
    // One D-Bus session with an unlocked keyring for the whole script: enroll,
    // login (token into the keyring), pending (token out of it).
    let script = r#"
        printf 'countersign-test' | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1
        bin="$1"; shift
        "$bin" "$@" enroll "$LINK" && "$bin" "$@" login && "$bin" "$@" pending --json
    "#;
    let profile = person.profile();
    let key = person.key.clone();
    let out = blocking(move || {
        let bin = env!("CARGO_BIN_EXE_countersign");
        let mut child = Command::new("dbus-run-session")
            .args(["--", "bash", "-c", script, "countersign-test", bin, "--profile-dir"])
            .arg(&profile)
            .arg("--soft-key")
            .arg(&key)
            .env("LINK", l)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{PIN}\n{PIN}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            Out {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            profile,
        )
    })
    .await;
    let (out, profile) = out;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Logged in as alice"), "{out:?}");
    assert!(out.stdout.trim_end().ends_with(']'), "pending --json printed a list: {out:?}");
    assert!(!profile.join("session").exists(), "no token file with the keyring store");
    // And without a Secret Service, a clear error rather than a plaintext fallback.
    let out = blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_countersign"))
            .arg("--profile-dir")
            .arg(&profile)
            .arg("pending")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .output()
            .unwrap()
    })
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("OS keyring") && stderr.contains("--session-store file"), "{stderr}");
}

#[test]
fn help_completions_and_man_page_come_from_the_definition() {
    let bin = env!("CARGO_BIN_EXE_countersign");
    let help = Command::new(bin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for word in [
        "enroll",
        "approve",
        "reject",
        "freeze",
        "verify-certificate",
        "Exit codes",
        "5  verification failed",
    ] {
        assert!(help.contains(word), "{word}: {help}");
    }
    let bash = Command::new(bin).args(["completions", "bash"]).output().unwrap();
    assert!(String::from_utf8_lossy(&bash.stdout).contains("verify-certificate"));
    let man = Command::new(bin).arg("man").output().unwrap();
    assert!(String::from_utf8_lossy(&man.stdout).starts_with(".ie"), "roff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn founding_people_sign_the_genesis_and_settlement_verifies_from_its_hash() {
    let gw = Gateway::start_tls(Db::Sqlite).await;
    let mut people = Vec::new();
    for id in ["alice", "bob", "carol"] {
        people.push(enrolled(&gw, id).await);
    }
    let admin = [Role::Admin];
    for id in ["dave", "erin", "frank"] {
        people.push(enrolled_with(bootstrap_link(&gw, id, &admin, &["admins"]).await, id).await);
    }
    let key = gw.api_key("key_cli", KeySpec::default()).await; // owned by bob
    let hash = countersign_gateway::authority::draft(&gw.state, gw.now()).await.unwrap().hash;

    let people = {
        let hash = hash.clone();
        blocking(move || {
            let out = people[0].run(&["genesis", "show"], "");
            assert_eq!(out.code, 0, "{out:?}");
            assert!(
                out.stdout.contains(&hash[..4]) && out.stdout.contains("waiting for 6 key(s)"),
                "{out:?}"
            );
            // A hash nobody compared is refused before the key is touched.
            let out = people[0].run(&["genesis", "sign", "--hash", &"ab".repeat(32)], &format!("{PIN}\n"));
            assert_eq!(out.code, 5, "{out:?}");
            assert!(out.stderr.contains("do not sign it"), "{out:?}");
            for (i, p) in people.iter().enumerate() {
                let out = p.run(&["genesis", "sign", "--hash", &hash], &format!("{PIN}\n"));
                assert_eq!(out.code, 0, "{out:?}");
                assert_eq!(out.stdout.contains("SEALED"), i == 5, "{out:?}");
            }
            // Signing pinned the hash in alice's profile: `chain` verifies from it,
            // and another hash is refused.
            let out = people[0].run(&["chain"], "");
            assert_eq!(out.code, 0, "{out:?}");
            assert!(
                out.stdout.contains("head 0 ") && out.stdout.contains("verified from the pinned genesis"),
                "{out:?}"
            );
            let out = people[0].run(&["chain", "--genesis", &"cd".repeat(32)], "");
            assert_eq!(out.code, 5, "{out:?}");
            assert!(out.stderr.contains("your profile pins genesis"), "{out:?}");
            people
        })
        .await
    };

    let id = gw.withdraw(&key, &eth("12.5")).await.op_id();
    let people = {
        let id = id.clone();
        blocking(move || {
            for p in [&people[0], &people[2]] {
                assert_eq!(p.run(&["approve", &id], &format!("{PIN}\n")).code, 0);
            }
            people
        })
        .await
    };

    // Settlement pins the genesis hash and verifies the release from the chain.
    let dir = tempfile::tempdir().unwrap();
    let ledger = gw.state.store.ledger().await.unwrap();
    let doc = dir.path().join("release.json");
    let entry = ledger.iter().find(|l| l.operation_id == id).unwrap();
    std::fs::write(&doc, serde_json::to_vec(&entry.certificate).unwrap()).unwrap();
    let chain = dir.path().join("authority.json");
    let body = gw.http.get(format!("{}/v1/authority", gw.base)).send().await.unwrap().text().await.unwrap();
    std::fs::write(&chain, body).unwrap();
    let gateway_key = data_encoding::BASE64URL_NOPAD.encode(gw.state.keys.verifying_key().as_bytes());
    let profile = dir.path().join("settlement");
    let verify = move |pinned: String| {
        let args = ["verify-certificate", doc.to_str().unwrap(), "--genesis", &pinned, "--authority"];
        let args = [&args[..], &[chain.to_str().unwrap(), "--gateway-key", &gateway_key]].concat();
        run_with(&profile, None, &args, "")
    };
    let (ok, other) = blocking(move || (verify(hash), verify("cd".repeat(32)))).await;
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains(&format!("OK: {id} may be settled")), "{ok:?}");
    assert_eq!(other.code, 5, "{other:?}");
    assert!(other.stderr.contains("authority.genesis_mismatch"), "{other:?}");
    drop(people);
}
