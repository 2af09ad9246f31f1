//! The host-side commands of `countersign-gateway`, run as a subprocess.

use std::path::Path;
use std::process::{Command, Output};

fn gateway(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_countersign-gateway"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../countersign.example.toml"))
            .unwrap();
    let config = dir.path().join("countersign.toml");
    std::fs::write(
        &config,
        example.replace("data_dir = \"data\"", &format!("data_dir = {:?}", dir.path().join("data"))),
    )
    .unwrap();
    (dir, config)
}

#[test]
fn help_describes_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_countersign-gateway")).arg("--help").output().unwrap();
    let help = text(&out);
    for cmd in ["serve", "api-key", "freeze", "unfreeze", "allowlist", "audit", "approver", "registry"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn keys_freeze_and_audit_from_the_host() {
    let (_dir, config) = setup();
    let out = gateway(
        &config,
        &[
            "api-key",
            "create",
            "--id",
            "key_bot",
            "--owner",
            "bob",
            "--algorithm",
            "hmac",
            "--scope",
            "read,withdraw",
            "--allow-ip",
            "10.1.0.0/16",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    let secret = shown
        .lines()
        .find_map(|l| l.strip_prefix("HMAC secret (shown once, store it in the bot's secret store): "))
        .unwrap();
    assert_eq!(secret.len(), 43, "32 bytes, base64url");

    let out = gateway(
        &config,
        &["api-key", "create", "--id", "key_bot", "--owner", "bob", "--algorithm", "hmac", "--scope", "read"],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("api_key.exists"), "{}", text(&out));
    let out = gateway(
        &config,
        &[
            "api-key",
            "create",
            "--id",
            "key_x",
            "--owner",
            "bob",
            "--algorithm",
            "ed25519",
            "--scope",
            "read",
        ],
    );
    assert!(text(&out).contains("--public-key is required"), "{}", text(&out));
    let out = gateway(
        &config,
        &["api-key", "create", "--id", "key_x", "--owner", "bob", "--algorithm", "hmac", "--scope", "admin"],
    );
    assert!(text(&out).contains("unknown scope"), "{}", text(&out));

    let out = gateway(&config, &["api-key", "list"]);
    assert!(text(&out).contains("key_bot") && !text(&out).contains(secret), "the list never shows secrets");
    assert!(gateway(&config, &["freeze", "--reason", "drill"]).status.success());
    assert!(text(&gateway(&config, &["freeze", "--reason", "again"])).contains("already frozen"));
    assert!(gateway(&config, &["api-key", "revoke", "key_bot"]).status.success());
    assert!(!gateway(&config, &["api-key", "revoke", "key_bot"]).status.success());
    assert!(text(&gateway(&config, &["audit", "checkpoint"])).contains("checkpoint signed at entry"));

    // Export, verify, tamper, verify again: the broken entry is named.
    let export = gateway(&config, &["audit", "export"]);
    assert!(export.status.success());
    let file = config.with_file_name("audit.jsonl");
    std::fs::write(&file, &export.stdout).unwrap();
    let ok = gateway(&config, &["audit", "verify", file.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("1 signed checkpoints"), "{}", text(&ok));
    let tampered = String::from_utf8(export.stdout).unwrap().replacen(
        "\"reason\":\"drill\"",
        "\"reason\":\"routine\"",
        1,
    );
    std::fs::write(&file, tampered).unwrap();
    let bad = gateway(&config, &["audit", "verify", file.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("content does not match its hash"), "{}", text(&bad));
    assert!(text(&bad).contains("entry 3:"), "{}", text(&bad)); // 1 policy, 2 key, 3 freeze
}

#[test]
fn bad_configuration_is_refused_clearly() {
    let (_dir, config) = setup();
    std::fs::write(&config, "listen = \"nowhere\"\n").unwrap();
    let out = gateway(&config, &["api-key", "list"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("countersign.toml"), "{}", text(&out));
    let out = gateway(Path::new("/nonexistent/countersign.toml"), &["api-key", "list"]);
    assert!(text(&out).contains("cannot read"), "{}", text(&out));
}
