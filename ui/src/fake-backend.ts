import type { Backend } from "./backend";
import type { AdminOverview, AppError, Decision, GatewayEvent, KeyInfo, KeyPrompt, Operation, Outcome, Settings, Status } from "./types";

/** A sample pending withdrawal, shaped exactly like what Rust sends: created `n`
 * seconds before `base`, expiring 40½ minutes after it. */
export function sampleOperation(n: number, amount = "12.5", base = Date.now()): Operation {
  const id = `op_fake${String(n).padStart(6, "0")}`;
  const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  return {
    operation: {
      id,
      created_at: iso(base - n * 1000),
      expires_at: iso(base + 40.5 * 60 * 1000),
      policy_version: 1,
      initiator: { type: "api_key", key_id: "key_bot1", owner: "bob", source_ip: "10.20.0.7" },
      action: {
        kind: "withdrawal",
        details: {
          account: "acct_main",
          asset: "ETH",
          network: "ethereum",
          amount,
          destination: { address: "0x8ba1f109551bD432803012645Ac136ddd64DBA72" },
          reference_value: { amount: String(Number(amount) * 3000), currency: "USD" },
        },
      },
    },
    digest: "0".repeat(63) + (n % 10),
    fingerprint: `FAKE-${String(n).padStart(4, "0")}-ABCD-EFGH`,
    state: "pending",
    verdict: {
      verdict: "require_approval",
      quorum: { groups: [{ group: "traders", min: 2 }], rejections_to_veto: 1 },
      reasons: [{ reason: "amount_tier", tier: "large" }],
      expires_at: iso(base + 40.5 * 60 * 1000),
    },
    risk: { score: 45, signals: [{ signal: "new_destination" }, { signal: "velocity_budget", used_percent: 80 }] },
  };
}

export interface FakeOptions {
  pin?: string;
  /** Never "touched": sign waits until cancelled. */
  neverTouched?: boolean;
  /** Not enrolled yet (first run). */
  unenrolled?: boolean;
  operations?: Operation[];
  /** Several keys connected: the ceremony asks which one first. */
  keys?: KeyInfo[];
  /** Not an admin: admin calls are refused as the gateway refuses them. */
  notAdmin?: boolean;
  /** A genesis draft waiting for this person's key (and bob's). */
  genesisDraft?: boolean;
}

/** An in-memory backend with the same prompts as the real key ceremony. */
export class FakeBackend implements Backend {
  ops: Operation[];
  decided: { id: string; decision: Decision; reason: string | null }[] = [];
  private prepared = new Map<string, Decision>();
  private keyHandlers: ((p: KeyPrompt) => void)[] = [];
  private eventHandlers: ((e: GatewayEvent) => void)[] = [];
  private pinWaiter: ((pin: string | null) => void) | null = null;
  private choiceWaiter: ((index: number | null) => void) | null = null;
  /** The key chosen in the last ceremony. */
  chosenKey: number | null = null;
  invited: { id: string; name: string; roles: string[]; groups: string[] }[] = [];
  admin: AdminOverview = {
    approvers: [
      { id: "alice", display_name: "Alice", roles: ["admin", "approver"], groups: ["traders"], credentials: [{ id: "cred_a", label: "laptop", status: "active", software: true }] },
      { id: "carol", display_name: "Carol", roles: ["approver"], groups: ["traders"], credentials: [{ id: "cred_c", label: "yubikey", status: "active" }] },
    ],
    apiKeys: [
      { id: "key_bot1", owner: "bob", label: "market maker 1", algorithm: "ed25519", scopes: ["read", "withdraw"], ip_allowlist: ["10.20.0.0/16"], max_reference_value: "250000", expires_at: null, revoked_at: null, last_used_at: "2026-11-28T11:59:00Z", last_used_ip: "10.20.0.7" },
    ],
  };
  private cancelWaiter: (() => void) | null = null;
  private retries = 8;
  private loggedIn = false;
  private approver: string | null;
  enrolledWith: { link: string; label: string } | null = null;

  constructor(private options: FakeOptions = {}) {
    this.ops = options.operations ?? [sampleOperation(1), sampleOperation(2, "40")];
    this.approver = options.unenrolled ? null : "alice";
  }

  private prompt(p: KeyPrompt) {
    this.keyHandlers.forEach((h) => h(p));
  }

  /** Push a gateway event, as the live stream would. */
  push(e: GatewayEvent) {
    this.eventHandlers.forEach((h) => h(e));
  }

  async status(): Promise<Status> {
    return {
      gateway: this.approver ? "https://fake.gateway" : "",
      approver: this.approver,
      loggedIn: this.loggedIn,
      softwareKey: true,
      demoPin: this.options.pin ?? "4821",
    };
  }

  async enroll(link: string, label: string): Promise<Status> {
    if (!link.startsWith("countersign://enroll?")) {
      throw { code: "client.link", message: "enrollment link: it must start with countersign://enroll?" } satisfies AppError;
    }
    await this.ceremony();
    this.approver = "alice";
    this.enrolledWith = { link, label };
    return this.status();
  }

  async lock(): Promise<Status> {
    this.loggedIn = false;
    return this.status();
  }

  async login(): Promise<Status> {
    await this.ceremony();
    this.loggedIn = true;
    return this.status();
  }

  async pending(): Promise<Operation[]> {
    return this.ops.filter((o) => o.state === "pending");
  }

  async prepare(id: string, decision: Decision): Promise<Operation> {
    const op = this.ops.find((o) => o.operation.id === id);
    if (!op) throw { code: "operation.not_found", message: `${id} not found` } satisfies AppError;
    this.prepared.set(id, decision);
    return op;
  }

  private waitPin(): Promise<string | null> {
    return new Promise((resolve) => (this.pinWaiter = resolve));
  }

  private async ceremony(): Promise<void> {
    const keys = this.options.keys ?? [];
    if (keys.length > 1) {
      this.prompt({ kind: "choose-key", keys });
      const index = await new Promise<number | null>((resolve) => (this.choiceWaiter = resolve));
      if (index === null) throw { code: "key.cancelled", message: "cancelled" } satisfies AppError;
      this.chosenKey = index;
    }
    let wrong = false;
    for (;;) {
      this.prompt({ kind: "pin", retriesLeft: this.retries, previousWrong: wrong });
      const pin = await this.waitPin();
      if (pin === null) throw { code: "key.cancelled", message: "cancelled" } satisfies AppError;
      if (pin === (this.options.pin ?? "4821")) break;
      this.retries -= 1;
      wrong = true;
    }
    this.retries = 8;
    this.prompt({ kind: "touch" });
    if (this.options.neverTouched) {
      await new Promise<void>((resolve) => (this.cancelWaiter = resolve));
      throw { code: "key.cancelled", message: "cancelled" } satisfies AppError;
    }
    this.prompt({ kind: "processing" });
  }

  async sign(id: string, reason: string | null): Promise<Outcome> {
    const decision = this.prepared.get(id);
    if (!decision) throw { code: "ceremony.unknown", message: "no challenge" } satisfies AppError;
    await this.ceremony();
    this.prepared.delete(id);
    this.decided.push({ id, decision, reason });
    const op = this.ops.find((o) => o.operation.id === id)!;
    op.state = decision === "reject" ? "rejected" : "pending";
    const decided_at = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
    op.decisions = [...(op.decisions ?? []), { approver: this.approver ?? "?", decision, reason, decided_at, check: { verdict: "signed" } }];
    return { state: op.state };
  }

  async answerPin(pin: string | null) {
    const w = this.pinWaiter;
    this.pinWaiter = null;
    w?.(pin);
  }

  async answerLastRetry() {}

  async answerChoice(index: number | null) {
    const w = this.choiceWaiter;
    this.choiceWaiter = null;
    w?.(index);
  }

  async history(): Promise<Operation[]> {
    return this.ops.filter((o) => o.state !== "pending");
  }

  async settings(): Promise<Settings> {
    return {
      gateway: "https://fake.gateway",
      pinnedKey: "sha256/FAKEPINFAKEPINFAKEPINFAKEPINFAKEPINFAKEPIN0",
      approver: this.approver,
      profileDir: "/home/alice/.config/countersign",
      softwareKey: true,
      keys: this.options.keys ?? [{ label: "SOFTWARE KEY (demo)", software: true }],
      authority: this.options.genesisDraft
        ? { draft: { hash: FakeBackend.GENESIS, missing: this.genesisSigned ? ["bob"] : ["alice", "bob"], yours: !this.genesisSigned } }
        : {
            genesis: "dcd8c2e993209d6dce4699320e0bdc26f2fdccb2c94f9bf078b863627a992180",
            pinned: true,
            head: { index: 3, hash: "5b1f0c9e7a3d2e8f4c6b0a19d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9" },
            links: 3,
          },
    };
  }

  private requireAdmin() {
    if (this.options.notAdmin) throw { code: "admin.not_an_admin", message: "only admins may do this" } satisfies AppError;
  }

  async adminOverview(): Promise<AdminOverview> {
    this.requireAdmin();
    return structuredClone(this.admin);
  }

  async adminInvite(id: string, name: string, roles: string[], groups: string[]): Promise<string> {
    this.requireAdmin();
    this.invited.push({ id, name, roles, groups });
    return `countersign://enroll?gateway=https%3A%2F%2Ffake.gateway&code=FAKECODE${this.invited.length}&pin=sha256%2FFAKEPIN`;
  }

  proposed: { kind: string; details: Record<string, unknown> }[] = [];

  async policy(): Promise<Record<string, unknown> | null> {
    return { version: 1, reference_currency: "USD", withdrawal_quorum: { groups: [{ group: "traders", min: 1 }] }, admin_quorum: { groups: [{ group: "admins", min: 2 }] } };
  }

  async adminPropose(action: { kind: string; details: Record<string, unknown> }): Promise<Operation> {
    this.requireAdmin();
    if (action.kind === "api_key_create" && !/^[A-Za-z0-9_-]{43}$/.test(String(action.details.public_key))) {
      throw { code: "operation.invalid", message: "public_key: an Ed25519 public key, 32 bytes in base64url" } satisfies AppError;
    }
    this.proposed.push(action);
    const op = sampleOperation(900 + this.proposed.length);
    op.operation.action = action;
    op.operation.initiator = { type: "approver", approver: "alice" };
    return op;
  }

  async adminRevokeApiKey(id: string): Promise<void> {
    this.requireAdmin();
    const key = this.admin.apiKeys.find((k) => k.id === id && !k.revoked_at);
    if (!key) throw { code: "api_key.unknown", message: `no active API key ${id}` } satisfies AppError;
    key.revoked_at = "2026-11-28T12:00:00Z";
  }

  async cancel() {
    this.pinWaiter?.(null);
    this.pinWaiter = null;
    this.choiceWaiter?.(null);
    this.choiceWaiter = null;
    this.cancelWaiter?.();
    this.cancelWaiter = null;
  }

  async freeze(): Promise<boolean> {
    await this.ceremony();
    return true;
  }

  /** The draft's hash, as the app computes it. */
  static readonly GENESIS = "51edeed8ba7906684d91b409d964e8698672ffab057c8ad6d34135f01bad1a83";
  genesisSigned = false;

  async signGenesis(hash: string): Promise<{ sealed: boolean; missing: number }> {
    if (hash.replace(/\s/g, "").toLowerCase() !== FakeBackend.GENESIS) {
      throw { code: "client.tampered", message: `refusing to sign: the genesis on the gateway hashes to ${FakeBackend.GENESIS}, not ${hash}: do not sign it` } satisfies AppError;
    }
    await this.ceremony();
    this.genesisSigned = true;
    return { sealed: false, missing: 1 };
  }

  onKeyPrompt(handler: (p: KeyPrompt) => void) {
    this.keyHandlers.push(handler);
  }

  onGatewayEvent(handler: (e: GatewayEvent) => void) {
    this.eventHandlers.push(handler);
  }
}
