import { App } from "./app";
import { FakeBackend, sampleOperation } from "./fake-backend";

async function until<T>(probe: () => T | null | undefined | false, what: string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = probe();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const q = (sel: string) => document.querySelector<HTMLElement>(`[data-testid="${sel}"]`);
const all = (sel: string) => document.querySelectorAll<HTMLElement>(`[data-testid="${sel}"]`);

async function typePin(pin: string) {
  const input = await until(() => q("pin") as HTMLInputElement | null, "PIN field");
  input.value = pin;
  q("pin-ok")!.click();
}

async function loggedIn(backend: FakeBackend) {
  document.body.innerHTML = '<div id="app"></div>';
  const app = new App(document.getElementById("app")!, backend);
  await app.start();
  q("login")!.click();
  await typePin("4821");
  await until(() => all("row").length > 0 || q("inbox"), "inbox");
  return app;
}

describe("Countersign Desktop UI", () => {
  test("a software key is announced permanently and login asks for the PIN", async () => {
    const backend = new FakeBackend();
    await loggedIn(backend);
    expect(q("software-banner")!.textContent).toContain("SOFTWARE KEY IN USE");
    expect(all("row")).toHaveLength(2);
    expect(all("row")[0].textContent).toContain("ETH");
    expect(all("row")[0].textContent).toContain("40 min left");
  });

  test("approve: every field and the fingerprint, a wrong PIN asked again, touch, done", async () => {
    const backend = new FakeBackend();
    await loggedIn(backend);
    all("row")[0].click();
    const detail = await until(() => q("detail"), "detail");
    const id = all("row")[0].dataset.id!;
    expect(q("fingerprint")!.textContent).toMatch(/^FAKE-/);
    expect(detail.textContent).toContain("action.details.destination.address");
    expect(detail.textContent).toContain("First withdrawal from this account to this address.");
    q("approve")!.click();
    await typePin("0000");
    await until(() => q("pin-wrong"), "wrong PIN message");
    expect(q("dialog")!.textContent).toContain("7 retries left");
    await typePin("4821");
    await until(() => !q("dialog"), "dialog closed");
    expect(backend.decided).toEqual([{ id, decision: "approve", reason: null }]);
    expect(document.getElementById("toast")!.textContent).toContain("Approved");
  });

  test("reject needs a reason, then signs it", async () => {
    const backend = new FakeBackend();
    await loggedIn(backend);
    all("row")[1].click();
    await until(() => q("detail"), "detail");
    q("reject")!.click();
    expect(document.getElementById("toast")!.textContent).toContain("reason");
    expect(q("dialog")).toBeNull();
    (q("reason") as HTMLInputElement).value = "unknown destination";
    q("reject")!.click();
    await typePin("4821");
    await until(() => backend.decided.length === 1, "decision");
    expect(backend.decided[0].decision).toBe("reject");
    expect(backend.decided[0].reason).toBe("unknown destination");
  });

  test("a pending touch shows a countdown and can be cancelled, with a specific error", async () => {
    const backend = new FakeBackend({ neverTouched: true });
    document.body.innerHTML = '<div id="app"></div>';
    await new App(document.getElementById("app")!, backend).start();
    q("login")!.click();
    await typePin("4821");
    await until(() => q("touch"), "touch prompt");
    expect(q("touch-countdown")!.textContent).toBe("30 s");
    q("cancel")!.click();
    const err = await until(() => q("dialog-error"), "error");
    expect(err.textContent).toBe("cancelled [key.cancelled]");
  });

  test("10,000 pending operations: only the rows in view are in the page", async () => {
    const ops = Array.from({ length: 10_000 }, (_, i) => sampleOperation(i + 1));
    await loggedIn(new FakeBackend({ operations: ops }));
    expect(document.querySelector("h2")!.textContent).toContain("10000");
    expect(all("row").length).toBeLessThan(60);
  });

  test("operation fields are text, never markup", async () => {
    const evil = sampleOperation(1);
    (evil.operation.action.details as { destination: { address: string } }).destination.address = '<img src=x onerror="window.pwned=1">';
    await loggedIn(new FakeBackend({ operations: [evil] }));
    all("row")[0].click();
    await until(() => q("detail"), "detail");
    expect(document.querySelector("img")).toBeNull();
    expect(q("detail")!.textContent).toContain("<img src=x");
  });

  test("a pushed event refreshes the inbox", async () => {
    const backend = new FakeBackend({ operations: [sampleOperation(1)] });
    await loggedIn(backend);
    expect(all("row")).toHaveLength(1);
    backend.ops.push(sampleOperation(2));
    backend.push({ id: "42", event: "operation.pending", data: { operation: "op_fake000002" } });
    await until(() => all("row").length === 2, "second row");
    expect(q("live")!.textContent).toContain("event 42");
  });

  test("first run: a bad link is refused clearly, a good one enrolls the key with PIN and touch", async () => {
    const backend = new FakeBackend({ unenrolled: true });
    document.body.innerHTML = '<div id="app"></div>';
    await new App(document.getElementById("app")!, backend).start();
    expect(q("login")).toBeNull();
    (q("enroll-link") as HTMLTextAreaElement).value = "https://not-a-link";
    q("enroll")!.click();
    expect((await until(() => q("dialog-error"), "error")).textContent).toContain("[client.link]");
    q("dialog-close")!.click();
    (q("enroll-link") as HTMLTextAreaElement).value = "countersign://enroll?gateway=https%3A%2F%2Fgw&code=ABC&pin=x";
    (q("enroll-label") as HTMLInputElement).value = "desk key";
    q("enroll")!.click();
    await typePin("4821");
    await until(() => q("login"), "login screen after enrollment");
    expect(backend.enrolledWith).toEqual({ link: "countersign://enroll?gateway=https%3A%2F%2Fgw&code=ABC&pin=x", label: "desk key" });
  });

  test("idle for too long: the app locks and the key is needed again", async () => {
    const backend = new FakeBackend();
    document.body.innerHTML = '<div id="app"></div>';
    await new App(document.getElementById("app")!, backend, () => Date.now(), 60).start();
    q("login")!.click();
    await typePin("4821");
    await until(() => all("row").length > 0, "inbox");
    await until(() => q("login"), "locked after 60 ms idle");
    expect(document.getElementById("toast")!.textContent).toContain("Locked after inactivity");
    expect((await backend.status()).loggedIn).toBe(false);
  });

  test("the lock button locks at once", async () => {
    await loggedIn(new FakeBackend());
    q("lock")!.click();
    await until(() => q("login"), "login screen");
    expect(all("row")).toHaveLength(0);
  });

  test("history lists decided operations with their outcome, read-only", async () => {
    const rejected = sampleOperation(7, "3");
    rejected.state = "rejected";
    const released = sampleOperation(8, "1");
    released.state = "released";
    const backend = new FakeBackend({ operations: [sampleOperation(1), rejected, released] });
    await loggedIn(backend);
    q("tab-history")!.click();
    await until(() => all("history-row").length === 2, "history rows");
    expect([...all("history-row")].map((r) => r.textContent)).toEqual([
      expect.stringContaining("rejected"),
      expect.stringContaining("released"),
    ]);
    all("history-row")[1].click();
    const detail = await until(() => q("detail"), "detail");
    expect(detail.textContent).toContain(released.fingerprint);
    expect(q("final-state")!.textContent).toBe("Outcome: released.");
    expect(q("approve")).toBeNull();
  });

  test("history shows each decision's reason with what its signature says", async () => {
    const rejected = sampleOperation(7, "3");
    rejected.state = "rejected";
    rejected.decisions = [
      { approver: "carol", decision: "approve", reason: null, decided_at: "2026-12-06T10:00:00Z", check: { verdict: "signed" } },
      { approver: "alice", decision: "reject", reason: "approved by phone", decided_at: "2026-12-06T10:01:00Z", check: { verdict: "reason_altered" } },
    ];
    const backend = new FakeBackend({ operations: [rejected] });
    await loggedIn(backend);
    q("tab-history")!.click();
    await until(() => all("history-row").length === 1, "history rows");
    all("history-row")[0].click();
    await until(() => all("decision").length === 2, "decisions");
    const [approved, vetoed] = [...all("decision")];
    expect(approved.dataset.verdict).toBe("signed");
    expect(approved.textContent).toContain("carol approved");
    expect(approved.querySelector(".verdict.ok")!.textContent).toContain("Signed by their key");
    expect(vetoed.textContent).toContain("alice rejected");
    expect(vetoed.textContent).toContain("\u201capproved by phone\u201d");
    expect(vetoed.querySelector(".verdict.bad")!.textContent).toContain("ALTERED");
  });

  test("settings show the gateway, the pinned key and the keys, nothing secret", async () => {
    const backend = new FakeBackend();
    await loggedIn(backend);
    q("tab-settings")!.click();
    const settings = await until(() => q("settings")?.textContent?.includes("fake.gateway") && q("settings"), "settings");
    expect(q("pinned-key")!.textContent).toMatch(/^sha256\//);
    expect(settings.textContent).toContain("SOFTWARE KEY");
    expect(settings.textContent).toContain("5 minutes");
    // The authority chain: the genesis in groups of four, and the head.
    expect(q("authority")!.textContent).toContain("Genesisdcd8 c2e9 9320");
    expect(q("authority")!.textContent).toContain("Head: link 3 of 3");
    expect(q("genesis-pinned")!.textContent).toContain("Pinned in your profile");
  });

  test("a founding person signs the genesis only after typing the hash they compared", async () => {
    const backend = new FakeBackend({ genesisDraft: true });
    await loggedIn(backend);
    q("tab-settings")!.click();
    const draft = await until(() => q("genesis-draft"), "genesis draft");
    expect(draft.textContent).toContain("51ed eed8 ba79");
    expect(draft.textContent).toContain("Waiting for: alice, bob");
    // A hash nobody compared: refused before the key is touched.
    (q("genesis-hash") as HTMLInputElement).value = "ab".repeat(32);
    q("sign-genesis")!.click();
    expect((await until(() => q("dialog-error"), "error")).textContent).toContain("do not sign it");
    expect(backend.genesisSigned).toBe(false);
    q("dialog-close")!.click();
    (q("genesis-hash") as HTMLInputElement).value = "51ed eed8 ba79 0668 4d91 b409 d964 e869 8672 ffab 057c 8ad6 d341 35f0 1bad 1a83";
    q("sign-genesis")!.click();
    await typePin("4821");
    await until(() => !q("dialog"), "dialog closed");
    expect(backend.genesisSigned).toBe(true);
    expect(document.getElementById("toast")!.textContent).toContain("1 key(s) still to sign");
    expect((await until(() => q("genesis-draft"), "draft")).textContent).toContain("Waiting for: bob");
    expect(q("sign-genesis")).toBeNull();
  });

  test("admin: people, an enrollment link, and an API key revoked at once", async () => {
    const backend = new FakeBackend();
    await loggedIn(backend);
    q("tab-admin")!.click();
    await until(() => all("approver-row").length === 2, "approvers");
    (q("invite-id") as HTMLInputElement).value = "dave";
    (q("invite-name") as HTMLInputElement).value = "Dave";
    (q("invite-groups") as HTMLInputElement).value = "traders, risk";
    q("invite")!.click();
    const link = await until(() => q("invite-link"), "invite link");
    expect(link.textContent).toMatch(/^countersign:\/\/enroll\?/);
    expect(backend.invited).toEqual([{ id: "dave", name: "Dave", roles: ["approver"], groups: ["traders", "risk"] }]);
    q("revoke-api-key")!.click();
    await until(() => q("api-key-row")?.textContent?.includes("revoked"), "revoked key");
    expect(backend.admin.apiKeys[0].revoked_at).not.toBeNull();
    expect(q("revoke-api-key")).toBeNull();
  });

  test("admin screen for a non-admin says why, with the gateway's code", async () => {
    const backend = new FakeBackend({ notAdmin: true });
    await loggedIn(backend);
    q("tab-admin")!.click();
    const error = await until(() => q("admin-error"), "admin error");
    expect(error.textContent).toContain("admin.not_an_admin");
  });

  test("several keys: the person picks one before the PIN", async () => {
    const backend = new FakeBackend({
      keys: [
        { label: "USB security key #1", firmware: "5.7.1", pin_retries: 8 },
        { label: "USB security key #2", firmware: "5.4.3", pin_retries: 3 },
      ],
    });
    document.body.innerHTML = '<div id="app"></div>';
    const app = new App(document.getElementById("app")!, backend);
    await app.start();
    q("login")!.click();
    await until(() => all("key-choice").length === 2, "key choice");
    expect(all("key-choice")[1].textContent).toContain("firmware 5.4.3");
    all("key-choice")[1].click();
    await typePin("4821");
    await until(() => q("inbox"), "inbox");
    expect(backend.chosenKey).toBe(1);
  });

  test("admin proposals: an allowlist entry and an Ed25519 API key go to the quorum; a bad key is refused", async () => {
    const backend = new FakeBackend();
    await loggedIn(backend);
    q("tab-admin")!.click();
    await until(() => q("policy")?.textContent?.includes("admin_quorum"), "policy in force");
    (q("allow-address") as HTMLInputElement).value = "0x8ba1f109551bD432803012645Ac136ddd64DBA72";
    (q("allow-label") as HTMLInputElement).value = "cold wallet";
    q("propose-allowlist")!.click();
    await until(() => backend.proposed.length === 1, "allowlist proposal");
    expect(backend.proposed[0]).toEqual({
      kind: "allowlist_add",
      details: { account: "acct_main", network: "ethereum", destination: { address: "0x8ba1f109551bD432803012645Ac136ddd64DBA72" }, label: "cold wallet" },
    });
    (q("key-id") as HTMLInputElement).value = "key_mm2";
    (q("key-owner") as HTMLInputElement).value = "bob";
    (q("key-public") as HTMLInputElement).value = "not-a-key";
    q("propose-api-key")!.click();
    await until(() => document.getElementById("toast")!.textContent!.includes("operation.invalid"), "refusal");
    (q("key-public") as HTMLInputElement).value = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    (q("key-scopes") as HTMLInputElement).value = "withdraw, read, read";
    (q("key-allow-ip") as HTMLInputElement).value = "198.51.100.0/24";
    q("propose-api-key")!.click();
    await until(() => backend.proposed.length === 2, "API key proposal");
    expect(backend.proposed[1].details).toEqual({
      key_id: "key_mm2", owner: "bob", label: "", algorithm: "ed25519",
      public_key: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", scopes: ["read", "withdraw"], ip_allowlist: ["198.51.100.0/24"],
    });
    expect(document.getElementById("toast")!.textContent).toContain("waits for the admin quorum");
  });
});
