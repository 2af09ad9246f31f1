import type { Backend } from "./backend";
import { errorText, h } from "./dom";
import { amountLine, destination } from "./format";
import { CeremonyDialog } from "./key-dialog";
import { adminScreen } from "./screens/admin";
import { historyList } from "./screens/history";
import { inboxList, operationDetail } from "./screens/operations";
import { settingsScreen } from "./screens/settings";
import type { AdminOverview, Decision, Operation, Settings, Status } from "./types";

export { h } from "./dom";

/** Lock after this long without a click or a key press. */
export const IDLE_LOCK_MS = 5 * 60 * 1000;

export type View = "inbox" | "history" | "admin" | "settings";

const VIEWS: [View, string][] = [
  ["inbox", "Inbox"],
  ["history", "History"],
  ["admin", "Admin"],
  ["settings", "Settings"],
];

/** Countersign Desktop: inbox, operation detail, signing flow, history, admin, settings. */
export class App {
  private status: Status | null = null;
  private ops: Operation[] = [];
  private selected: string | null = null;
  private view: View = "inbox";
  private history: Operation[] = [];
  private settings: Settings | null = null;
  private admin: AdminOverview | null = null;
  private adminError: string | null = null;
  private lastInvite: string | null = null;
  private policy: Record<string, unknown> | null = null;
  private busy = false;
  private live = "";
  /** Re-rendered on every change; dialogs live in `overlay`, which is not. */
  private root: HTMLElement;
  private dialog: CeremonyDialog;

  private idleTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    host: HTMLElement,
    private backend: Backend,
    private now: () => number = () => Date.now(),
    private idleMs: number = IDLE_LOCK_MS,
  ) {
    for (const event of ["pointerdown", "keydown"]) document.addEventListener(event, () => this.armIdleLock(), { passive: true });
    this.root = h("div", { id: "content" });
    const overlay = h("div", { id: "overlay" });
    host.replaceChildren(this.root, overlay);
    this.dialog = new CeremonyDialog(overlay, backend);
    backend.onKeyPrompt((p) => this.dialog.onKeyPrompt(p));
    backend.onGatewayEvent((e) => {
      this.live = `live · event ${e.id}`;
      if (e.event.startsWith("operation.") || e.event.startsWith("decision.")) {
        void this.refresh();
        if (this.view === "history") void this.show("history");
      }
      else this.renderHeader();
    });
  }

  async start(): Promise<void> {
    this.status = await this.backend.status();
    if (this.status.loggedIn) {
      this.live = "live";
      await this.refresh();
      this.armIdleLock();
    }
    this.render();
  }

  /** (Re)start the idle timer; when it fires with nothing in progress, lock. */
  private armIdleLock(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (!this.status?.loggedIn) return;
    this.idleTimer = setTimeout(() => {
      if (this.busy) this.armIdleLock();
      else void this.lock("Locked after inactivity: log in with your key to continue.");
    }, this.idleMs);
  }

  async lock(message = "Locked."): Promise<void> {
    this.status = await this.backend.lock();
    this.ops = [];
    this.selected = null;
    this.live = "";
    this.render();
    this.toast(message);
  }

  async refresh(): Promise<void> {
    if (!this.status?.loggedIn) return;
    try {
      this.ops = await this.backend.pending();
      this.ops.sort((a, b) => b.operation.created_at.localeCompare(a.operation.created_at));
    } catch (e) {
      this.toast(`Could not load operations: ${errorText(e)}`, true);
    }
    this.render();
  }

  // ---------------------------------------------------------------- rendering

  private render(): void {
    const s = this.status;
    const parts: (Node | null)[] = [
      s?.softwareKey
        ? h(
            "div",
            { class: "banner", role: "alert", "data-testid": "software-banner" },
            "SOFTWARE KEY IN USE — for tests and the demo only. Real approvals need a hardware security key.",
            s.demoPin ? h("span", { class: "demo-pin" }, ` Demo PIN: ${s.demoPin}`) : null,
          )
        : null,
      h("header", { id: "header" }),
      !s?.approver ? this.renderEnroll() : s.loggedIn ? this.renderMain() : this.renderLogin(),
      h("div", { id: "toast", role: "status" }),
    ];
    this.root.replaceChildren(...parts.filter((p): p is Node => p !== null));
    this.renderHeader();
  }

  private renderHeader(): void {
    const header = this.root.querySelector("#header");
    if (!header || !this.status) return;
    const freeze = h("button", { class: "danger", "data-testid": "freeze" }, "Freeze all API keys");
    freeze.onclick = () => void this.freeze();
    header.replaceChildren(
      h("h1", {}, "Countersign"),
      h("span", { class: "muted" }, `${this.status.approver ?? "not enrolled"} @ ${this.status.gateway}`),
      h("span", { class: "live", "data-testid": "live" }, this.live),
    );
    if (this.status.loggedIn) {
      const lock = h("button", { "data-testid": "lock" }, "Lock");
      lock.onclick = () => void this.lock();
      header.append(lock, freeze);
    }
  }

  private renderEnroll(): HTMLElement {
    const link = h("textarea", { rows: "3", "data-testid": "enroll-link", placeholder: "countersign://enroll?gateway=…&code=…&pin=…" });
    const label = h("input", { type: "text", value: "security key", "data-testid": "enroll-label", "aria-label": "A name for this key" });
    const button = h("button", { class: "primary", "data-testid": "enroll" }, "Enroll this key");
    button.onclick = () =>
      void this.withCeremony("Enroll your key", async () => {
        this.status = await this.backend.enroll(link.value.trim(), label.value.trim() || "security key");
        this.render();
        return "Enrolled. Log in with your key (if an admin invited you, it counts once the admins approve).";
      });
    return h(
      "main",
      { class: "login" },
      h("h2", {}, "Enroll your security key"),
      h("p", {}, "Paste the enrollment link an admin gave you. It names the gateway and pins its key: nothing else will be trusted."),
      link,
      h("p", {}, label),
      button,
    );
  }

  private renderLogin(): HTMLElement {
    const button = h("button", { class: "primary", "data-testid": "login" }, "Log in with your security key");
    button.onclick = () => void this.login();
    return h(
      "main",
      { class: "login" },
      h("h2", {}, "Log in"),
      h("p", {}, "Insert your security key. You will be asked for its PIN and to touch it."),
      button,
    );
  }

  private renderMain(): HTMLElement {
    const nav = h("nav", { class: "tabs", "aria-label": "Screens" });
    for (const [view, label] of VIEWS) {
      const count = view === "inbox" && this.ops.length ? ` (${this.ops.length})` : "";
      const tab = h("button", { "data-testid": `tab-${view}`, ...(view === this.view ? { "aria-current": "page" } : {}) }, label + count);
      tab.onclick = () => void this.show(view);
      nav.append(tab);
    }
    const select = (id: string) => {
      this.selected = id;
      this.render();
    };
    const selected = (from: Operation[]) => from.find((o) => o.operation.id === this.selected);
    let body: HTMLElement;
    switch (this.view) {
      case "inbox":
        body = h(
          "div",
          { class: "split" },
          inboxList(this.ops, this.selected, this.now, select),
          operationDetail(selected(this.ops), this.now(), {
            decide: (op, decision, reason) => this.decide(op, decision, reason),
            refuse: (message) => this.toast(message, true),
          }),
        );
        break;
      case "history":
        body = h("div", { class: "split" }, historyList(this.history, this.selected, select), operationDetail(selected(this.history), this.now(), null));
        break;
      case "admin":
        body = adminScreen(
          { overview: this.admin, error: this.adminError, lastInvite: this.lastInvite, policy: this.policy },
          {
            invite: (id, name, roles, groups) => this.invite(id, name, roles, groups),
            revokeApiKey: (id) => this.revokeApiKey(id),
            propose: (action) => this.propose(action),
          },
        );
        break;
      case "settings":
        body = settingsScreen(this.settings, this.idleMs, { signGenesis: (hash) => void this.signGenesis(hash) });
        break;
    }
    return h("main", { class: "screens" }, nav, body);
  }

  /** Switch screens, loading what the screen shows. */
  async show(view: View): Promise<void> {
    this.view = view;
    if (view !== "inbox" && view !== "history") this.selected = null;
    try {
      if (view === "history") this.history = await this.backend.history();
      if (view === "settings") this.settings = await this.backend.settings();
      if (view === "admin") {
        this.adminError = null;
        try {
          this.admin = await this.backend.adminOverview();
          this.policy = await this.backend.policy();
        } catch (e) {
          this.admin = null;
          this.adminError = errorText(e);
        }
      }
    } catch (e) {
      this.toast(`Could not load ${view}: ${errorText(e)}`, true);
    }
    this.render();
  }

  private toast(message: string, error = false): void {
    const t = this.root.querySelector("#toast");
    if (!t) return;
    t.className = error ? "error" : "ok";
    t.textContent = message;
  }

  // ---------------------------------------------------------------- flows

  private async login(): Promise<void> {
    await this.withCeremony("Log in", async () => {
      this.status = await this.backend.login();
      this.live = "live";
      await this.refresh();
      this.armIdleLock();
      return "Logged in.";
    });
  }

  private async decide(op: Operation, decision: Decision, reason: string | null): Promise<void> {
    await this.withCeremony(decision === "approve" ? "Approve" : "Reject", async () => {
      // The operation is fetched again with the challenge and verified in Rust;
      // the dialog shows that copy, which is the one the key signs.
      const prepared = await this.backend.prepare(op.operation.id, decision);
      this.dialog.setBody(
        h("p", {}, `${decision === "approve" ? "Approving" : "Rejecting"} ${amountLine(prepared).amount} to ${destination(prepared)}`),
        h("p", { class: "fingerprint small" }, prepared.fingerprint),
        h("p", { class: "muted" }, "Waiting for your key…"),
      );
      const outcome = await this.backend.sign(op.operation.id, reason);
      await this.refresh();
      return `${decision === "approve" ? "Approved" : "Rejected"}: the operation is now ${outcome.state}.`;
    });
  }

  private async freeze(): Promise<void> {
    await this.withCeremony("Freeze every API key", async () => {
      const changed = await this.backend.freeze("frozen from Countersign Desktop");
      return changed ? "Every API key is frozen. Unfreezing needs the admin quorum." : "Already frozen.";
    });
  }

  private async signGenesis(hash: string): Promise<void> {
    await this.withCeremony("Sign the genesis", async () => {
      const done = await this.backend.signGenesis(hash);
      this.settings = await this.backend.settings();
      this.render();
      return done.sealed ? "Signed: every founding key has signed, the genesis is sealed." : `Signed: ${done.missing} key(s) still to sign.`;
    });
  }

  private async withCeremony(title: string, run: () => Promise<string>): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.dialog.open(title);
    try {
      const done = await run();
      this.dialog.close();
      this.toast(done);
    } catch (e) {
      this.dialog.fail(errorText(e));
    } finally {
      this.busy = false;
      this.dialog.stopTouchTimer();
    }
  }

  // ---------------------------------------------------------------- admin

  private async invite(id: string, name: string, roles: string[], groups: string[]): Promise<void> {
    try {
      this.lastInvite = await this.backend.adminInvite(id, name, roles, groups);
      this.render();
      this.toast("Enrollment link created: give it to them over a channel you trust.");
    } catch (e) {
      this.toast(errorText(e), true);
    }
  }

  private async revokeApiKey(id: string): Promise<void> {
    try {
      await this.backend.adminRevokeApiKey(id);
      this.toast(`Revoked ${id}: its requests are refused from now on.`);
      await this.show("admin");
    } catch (e) {
      this.toast(errorText(e), true);
    }
  }

  private async propose(action: { kind: string; details: Record<string, unknown> }): Promise<void> {
    try {
      const op = await this.backend.adminPropose(action);
      this.toast(`Proposed ${op.operation.id} (${op.fingerprint}): it waits for the admin quorum.`);
    } catch (e) {
      this.toast(errorText(e), true);
    }
  }
}
