import type { Backend } from "./backend";
import type { AppError, Decision, GatewayEvent, KeyPrompt, Operation, Outcome, Status } from "./types";

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
}

/** An in-memory backend with the same prompts as the real key ceremony. */
export class FakeBackend implements Backend {
  ops: Operation[];
  decided: { id: string; decision: Decision; reason: string | null }[] = [];
  private prepared = new Map<string, Decision>();
  private keyHandlers: ((p: KeyPrompt) => void)[] = [];
  private eventHandlers: ((e: GatewayEvent) => void)[] = [];
  private pinWaiter: ((pin: string | null) => void) | null = null;
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
    return { state: op.state };
  }

  async answerPin(pin: string | null) {
    const w = this.pinWaiter;
    this.pinWaiter = null;
    w?.(pin);
  }

  async answerLastRetry() {}

  async cancel() {
    this.pinWaiter?.(null);
    this.pinWaiter = null;
    this.cancelWaiter?.();
    this.cancelWaiter = null;
  }

  async freeze(): Promise<boolean> {
    await this.ceremony();
    return true;
  }

  onKeyPrompt(handler: (p: KeyPrompt) => void) {
    this.keyHandlers.push(handler);
  }

  onGatewayEvent(handler: (e: GatewayEvent) => void) {
    this.eventHandlers.push(handler);
  }
}
