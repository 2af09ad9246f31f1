import type { Backend } from "./backend";
import { amountLine, badge, checkVerdict, decisionLine, destination, explainSignal, flatten, quorumLine, timeLeft } from "./format";
import type { AdminOverview, AppError, Decision, KeyInfo, KeyPrompt, Operation, Settings, Status } from "./types";

/** Build an element. Text is always set as text, never parsed as HTML: operation
 * fields come from outside and must not be able to inject markup. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const ROW_HEIGHT = 76;
/** Lock after this long without a click or a key press. */
export const IDLE_LOCK_MS = 5 * 60 * 1000;
const TOUCH_SECONDS = 30;

/** "a, b ,c" -> ["a", "b", "c"]. */
function csv(v: string): string[] {
  return v.split(",").map((x) => x.trim()).filter(Boolean);
}

function describeKey(k: KeyInfo): string {
  const parts = [k.software ? `${k.label} (SOFTWARE)` : k.label];
  if (k.firmware) parts.push(`firmware ${k.firmware}`);
  if (k.pin_retries !== undefined && k.pin_retries !== null) parts.push(`${k.pin_retries} PIN tries left`);
  return parts.join(" · ");
}

function errorText(e: unknown): string {
  const err = e as Partial<AppError>;
  if (err && typeof err.message === "string") return err.code ? `${err.message} [${err.code}]` : err.message;
  return String(e);
}

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
  private dialog: HTMLElement | null = null;
  private touchTimer: ReturnType<typeof setInterval> | null = null;
  private live = "";
  /** Re-rendered on every change; dialogs live in `overlay`, which is not. */
  private root: HTMLElement;
  private overlay: HTMLElement;

  private idleTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    host: HTMLElement,
    private backend: Backend,
    private now: () => number = () => Date.now(),
    private idleMs: number = IDLE_LOCK_MS,
  ) {
    for (const event of ["pointerdown", "keydown"]) document.addEventListener(event, () => this.armIdleLock(), { passive: true });
    this.root = h("div", { id: "content" });
    this.overlay = h("div", { id: "overlay" });
    host.replaceChildren(this.root, this.overlay);
    backend.onKeyPrompt((p) => this.onKeyPrompt(p));
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
    let body: HTMLElement;
    switch (this.view) {
      case "inbox":
        body = h("div", { class: "split" }, this.renderInbox(), this.renderDetail(this.ops, true));
        break;
      case "history":
        body = h("div", { class: "split" }, this.renderHistory(), this.renderDetail(this.history, false));
        break;
      case "admin":
        body = this.renderAdmin();
        break;
      case "settings":
        body = this.renderSettings();
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

  private renderHistory(): HTMLElement {
    const section = h("section", { class: "history", "data-testid": "history", "aria-label": "Decided operations" });
    section.append(h("h2", {}, `Decided recently (${this.history.length})`));
    if (this.history.length === 0) {
      section.append(h("p", { class: "muted" }, "Nothing decided yet."));
      return section;
    }
    const table = h("table", { class: "list" }, h("tr", {}, h("th", {}, "outcome"), h("th", {}, "requested"), h("th", {}, "what"), h("th", {}, "to")));
    for (const op of this.history) {
      const { amount } = amountLine(op);
      const row = h(
        "tr",
        { "data-testid": "history-row", "data-id": op.operation.id, class: op.operation.id === this.selected ? "selected" : "" },
        h("td", {}, h("span", { class: `state state-${op.state}` }, op.state)),
        h("td", { class: "when" }, op.operation.created_at.replace("T", " ").replace("Z", "")),
        h("td", {}, amount),
        h("td", { class: "to" }, destination(op)),
      );
      row.onclick = () => {
        this.selected = op.operation.id;
        this.render();
      };
      table.append(row);
    }
    section.append(table);
    return section;
  }

  private renderSettings(): HTMLElement {
    const s = this.settings;
    const section = h("section", { class: "settings", "data-testid": "settings" }, h("h2", {}, "Settings"));
    if (!s) return section;
    const keys = Array.isArray(s.keys)
      ? s.keys.length
        ? h("ul", {}, ...s.keys.map((k) => h("li", {}, describeKey(k))))
        : h("span", {}, "No security key connected.")
      : h("span", { class: "error" }, s.keys.error);
    const rows: [string, Node | string][] = [
      ["Gateway", s.gateway ?? "not enrolled"],
      ["Pinned gateway key", h("code", { "data-testid": "pinned-key" }, s.pinnedKey ?? "none (plain HTTP to this machine only)")],
      ["You are", s.approver ?? "not enrolled"],
      ["Profile", s.profileDir ?? "not saved (demo mode)"],
      ["Signing with", s.softwareKey ? "SOFTWARE KEY — tests and demo only" : "a hardware security key (USB)"],
      ["Keys on this machine", keys],
      ["Locks after", `${Math.round(this.idleMs / 60000)} minutes without input`],
    ];
    section.append(h("table", { class: "fields" }, ...rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))));
    section.append(h("p", { class: "muted" }, "The pinned key came from your enrollment link: the app talks to no other gateway key. To change gateways, enroll again with a new link."));
    return section;
  }

  private renderAdmin(): HTMLElement {
    const section = h("section", { class: "admin", "data-testid": "admin" }, h("h2", {}, "Admin"));
    if (this.adminError) {
      section.append(h("p", { class: "error", "data-testid": "admin-error" }, this.adminError));
      return section;
    }
    const a = this.admin;
    if (!a) return section;
    section.append(
      h("h3", {}, "People and their keys"),
      h(
        "table",
        { class: "list" },
        h("tr", {}, h("th", {}, "id"), h("th", {}, "name"), h("th", {}, "roles"), h("th", {}, "groups"), h("th", {}, "keys")),
        ...a.approvers.map((p) =>
          h(
            "tr",
            { "data-testid": "approver-row" },
            h("td", {}, p.id, p.revoked ? " (revoked)" : ""),
            h("td", {}, p.display_name),
            h("td", {}, p.roles.join(", ")),
            h("td", {}, p.groups.join(", ")),
            h("td", {}, ...p.credentials.map((c) => h("div", {}, `${c.label} · ${c.status}`, c.software ? h("span", { class: "badge" }, " SOFTWARE KEY") : ""))),
          ),
        ),
      ),
    );
    // Invite: the new person's key counts only after the admin quorum approves it.
    const id = h("input", { type: "text", placeholder: "id (e.g. carol)", "data-testid": "invite-id", "aria-label": "New person's id" });
    const name = h("input", { type: "text", placeholder: "name", "data-testid": "invite-name", "aria-label": "New person's name" });
    const roles = h("input", { type: "text", value: "approver", "data-testid": "invite-roles", "aria-label": "Roles, comma-separated" });
    const groups = h("input", { type: "text", placeholder: "groups (e.g. traders)", "data-testid": "invite-groups", "aria-label": "Groups, comma-separated" });
    const invite = h("button", { class: "primary", "data-testid": "invite" }, "Create enrollment link");
    invite.onclick = async () => {
      try {
        this.lastInvite = await this.backend.adminInvite(id.value.trim(), name.value.trim(), csv(roles.value), csv(groups.value));
        this.render();
        this.toast("Enrollment link created: give it to them over a channel you trust.");
      } catch (e) {
        this.toast(errorText(e), true);
      }
    };
    section.append(
      h("h3", {}, "Invite a person"),
      h("div", { class: "form" }, id, name, roles, groups, invite),
      this.lastInvite ? h("p", {}, "Single-use link: ", h("code", { "data-testid": "invite-link" }, this.lastInvite)) : "",
      h("p", { class: "muted" }, "Their key counts only after the admin quorum approves the enrollment (it appears in the inbox of the other admins)."),
    );
    section.append(
      h("h3", {}, "API keys"),
      h(
        "table",
        { class: "list" },
        h("tr", {}, h("th", {}, "id"), h("th", {}, "owner"), h("th", {}, "scopes"), h("th", {}, "allowed from"), h("th", {}, "limit"), h("th", {}, "last used"), h("th", {}, "")),
        ...a.apiKeys.map((k) => {
          const revoke = h("button", { class: "danger", "data-testid": "revoke-api-key", "data-id": k.id }, "Revoke now");
          revoke.onclick = async () => {
            try {
              await this.backend.adminRevokeApiKey(k.id);
              this.toast(`Revoked ${k.id}: its requests are refused from now on.`);
              await this.show("admin");
            } catch (e) {
              this.toast(errorText(e), true);
            }
          };
          return h(
            "tr",
            { "data-testid": "api-key-row", "data-id": k.id },
            h("td", {}, k.id, " ", h("span", { class: "muted" }, k.label)),
            h("td", {}, k.owner),
            h("td", {}, k.scopes.join(", ")),
            h("td", {}, k.ip_allowlist.join(", ") || "nowhere"),
            h("td", {}, k.max_reference_value ?? "none"),
            h("td", {}, k.last_used_at ? `${k.last_used_at} from ${k.last_used_ip ?? "?"}` : "never"),
            h("td", {}, k.revoked_at ? h("span", { class: "state state-rejected" }, "revoked") : revoke),
          );
        }),
      ),
    );
    section.append(...this.renderProposals());
    section.append(
      h("h3", {}, "Policy in force"),
      h("pre", { class: "policy", "data-testid": "policy" }, this.policy ? JSON.stringify(this.policy, null, 2) : "none"),
      h("p", { class: "muted" }, "A new policy, revocations and lifting a freeze are proposed with the countersign CLI (countersign admin --help)."),
    );
    return section;
  }

  /** Forms that propose a change: each becomes an operation other admins approve. */
  private renderProposals(): Node[] {
    const input = (testid: string, placeholder: string, value = "") =>
      h("input", { type: "text", placeholder, value, "data-testid": testid, "aria-label": placeholder });
    // Sets in the canonical form are sorted and without duplicates.
    const set = (v: string) => [...new Set(csv(v))].sort();
    const propose = async (action: { kind: string; details: Record<string, unknown> }) => {
      try {
        const op = await this.backend.adminPropose(action);
        this.toast(`Proposed ${op.operation.id} (${op.fingerprint}): it waits for the admin quorum.`);
      } catch (e) {
        this.toast(errorText(e), true);
      }
    };
    const account = input("allow-account", "account", "acct_main");
    const network = input("allow-network", "network", "ethereum");
    const address = input("allow-address", "address");
    const memo = input("allow-memo", "memo (if the network needs one)");
    const label = input("allow-label", "label");
    const allow = h("button", { class: "primary", "data-testid": "propose-allowlist" }, "Propose");
    allow.onclick = () => {
      const destination: Record<string, unknown> = { address: address.value.trim() };
      if (memo.value.trim()) destination.memo = memo.value.trim();
      void propose({
        kind: "allowlist_add",
        details: { account: account.value.trim(), network: network.value.trim(), destination, label: label.value.trim() },
      });
    };
    const keyId = input("key-id", "key id (e.g. key_mm2)");
    const owner = input("key-owner", "owner (a person)");
    const keyLabel = input("key-label", "what it is for");
    const publicKey = input("key-public", "Ed25519 public key (base64url)");
    const scopes = input("key-scopes", "scopes", "read, withdraw");
    const allowIp = input("key-allow-ip", "allowed source CIDRs");
    const maxValue = input("key-max", "max per request (reference currency)");
    const create = h("button", { class: "primary", "data-testid": "propose-api-key" }, "Propose");
    create.onclick = () => {
      const details: Record<string, unknown> = {
        key_id: keyId.value.trim(),
        owner: owner.value.trim(),
        label: keyLabel.value.trim(),
        algorithm: "ed25519",
        public_key: publicKey.value.trim(),
        scopes: set(scopes.value),
        ip_allowlist: set(allowIp.value),
      };
      if (maxValue.value.trim()) details.max_reference_value = maxValue.value.trim();
      void propose({ kind: "api_key_create", details });
    };
    return [
      h("h3", {}, "Allowlist a destination"),
      h("div", { class: "form" }, account, network, address, memo, label, allow),
      h("h3", {}, "Create an API key"),
      h("div", { class: "form" }, keyId, owner, keyLabel, publicKey, scopes, allowIp, maxValue, create),
      h("p", { class: "muted" }, "Make the key pair where the bot runs and paste only its public half: approvers sign exactly that key, and no secret travels."),
    ];
  }

  private renderInbox(): HTMLElement {
    const list = h("section", { class: "inbox", "data-testid": "inbox", "aria-label": "Pending operations" });
    const title = h("h2", {}, `Waiting for approval (${this.ops.length})`);
    if (this.ops.length === 0) {
      list.append(title, h("p", { class: "muted" }, "Nothing is waiting. New requests appear here as they arrive."));
      return list;
    }
    // A windowed list: only the rows in view are in the DOM, so 10,000 stay smooth.
    const viewport = h("div", { class: "viewport" });
    const spacer = h("div", { class: "spacer" });
    spacer.style.height = `${this.ops.length * ROW_HEIGHT}px`;
    viewport.append(spacer);
    const draw = () => {
      const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - 5);
      const visible = Math.ceil((viewport.clientHeight || 800) / ROW_HEIGHT) + 10;
      const rows = this.ops.slice(first, first + visible).map((op, i) => this.renderRow(op, first + i));
      spacer.replaceChildren(...rows);
    };
    viewport.onscroll = draw;
    draw();
    list.append(title, viewport);
    return list;
  }

  private renderRow(op: Operation, index: number): HTMLElement {
    const { amount, reference } = amountLine(op);
    const id = op.operation.id;
    const row = h(
      "button",
      {
        class: `row${id === this.selected ? " selected" : ""}`,
        "data-testid": "row",
        "data-id": id,
      },
      h("div", { class: "amount" }, amount, h("span", { class: "muted" }, ` ${reference}`)),
      h("div", { class: "dest" }, destination(op)),
      h(
        "div",
        { class: "meta" },
        ...(op.risk?.signals ?? []).map((s) => h("span", { class: "badge" }, badge(s))),
        h("span", { class: "muted" }, ` ${timeLeft(op.operation.expires_at, this.now())} · needs ${quorumLine(op)}`),
      ),
    );
    row.style.top = `${index * ROW_HEIGHT}px`;
    row.onclick = () => {
      this.selected = id;
      this.render();
    };
    return row;
  }

  private renderDetail(from: Operation[], actions: boolean): HTMLElement {
    const op = from.find((o) => o.operation.id === this.selected);
    if (!op) return h("section", { class: "detail muted" }, "Select an operation to see every detail.");
    const { amount, reference } = amountLine(op);
    const initiator = op.operation.initiator;
    const approve = h("button", { class: "primary", "data-testid": "approve" }, "Approve with key");
    approve.onclick = () => void this.decide(op, "approve", null);
    const reason = h("input", { type: "text", placeholder: "Reason (required to reject)", "data-testid": "reason" });
    const reject = h("button", { class: "danger", "data-testid": "reject" }, "Reject with key");
    reject.onclick = () => {
      if (!reason.value.trim()) {
        this.toast("Give a reason to reject.", true);
        return;
      }
      void this.decide(op, "reject", reason.value.trim());
    };
    return h(
      "section",
      { class: "detail", "data-testid": "detail" },
      h("h2", {}, amount, h("span", { class: "muted" }, ` ${reference}`)),
      h("p", { class: "dest" }, `to ${destination(op)}`),
      h("p", { class: "label" }, "Fingerprint — compare it with the requester on a second channel"),
      h("p", { class: "fingerprint", "data-testid": "fingerprint" }, op.fingerprint),
      h("h3", {}, "Risk"),
      h(
        "ul",
        { class: "risk" },
        ...(op.risk?.signals?.length ? op.risk.signals.map((s) => h("li", {}, explainSignal(s))) : [h("li", {}, "No risk signals.")]),
      ),
      h(
        "p",
        {},
        `Requested by API key ${initiator.key_id ?? "?"} (owner ${initiator.owner ?? "?"}) from ${initiator.source_ip ?? "?"}. `,
        actions ? `Needs ${quorumLine(op)}; ${timeLeft(op.operation.expires_at, this.now())}.` : `Needed ${quorumLine(op)}.`,
      ),
      h("h3", {}, "Every field (from the canonical operation, checked in this app)"),
      h(
        "table",
        { class: "fields" },
        ...flatten(op.operation).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))),
        h("tr", {}, h("th", {}, "digest"), h("td", {}, op.digest)),
      ),
      ...this.renderDecisions(op),
      actions ? h("div", { class: "actions" }, approve, reason, reject) : h("p", { class: "muted", "data-testid": "final-state" }, `Outcome: ${op.state}.`),
    );
  }

  /** The decisions so far, each with what its signature says (checked in Rust). */
  private renderDecisions(op: Operation): HTMLElement[] {
    const decisions = op.decisions ?? [];
    if (decisions.length === 0) return [];
    return [
      h("h3", {}, "Decisions"),
      h(
        "ul",
        { class: "decisions" },
        ...decisions.map((d) => {
          const verdict = checkVerdict(d.check);
          return h(
            "li",
            { "data-testid": "decision", "data-verdict": d.check.verdict },
            h("span", {}, decisionLine(d)),
            h("span", { class: verdict.ok ? "verdict ok" : "verdict bad" }, ` ${verdict.ok ? "✓" : "⚠"} ${verdict.text}`),
          );
        }),
      ),
    ];
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
      this.setDialogBody(
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

  private async withCeremony(title: string, run: () => Promise<string>): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.openDialog(title);
    try {
      const done = await run();
      this.closeDialog();
      this.toast(done);
    } catch (e) {
      this.setDialogBody(h("p", { class: "error", "data-testid": "dialog-error" }, errorText(e)), this.closeButton());
    } finally {
      this.busy = false;
      this.stopTouchTimer();
    }
  }

  private openDialog(title: string): void {
    this.dialog = h("div", { class: "dialog", role: "dialog", "aria-modal": "true", "data-testid": "dialog" });
    this.dialog.append(h("h2", {}, title), h("div", { class: "body" }, h("p", { class: "muted" }, "Starting…")));
    this.overlay.replaceChildren(h("div", { class: "backdrop" }, this.dialog));
  }

  private closeDialog(): void {
    this.dialog?.parentElement?.remove();
    this.dialog = null;
  }

  private closeButton(): HTMLElement {
    const b = h("button", { "data-testid": "dialog-close" }, "Close");
    b.onclick = () => this.closeDialog();
    return b;
  }

  private setDialogBody(...children: Node[]): void {
    this.dialog?.querySelector(".body")?.replaceChildren(...children);
  }

  private cancelButton(): HTMLElement {
    const b = h("button", { "data-testid": "cancel" }, "Cancel");
    b.onclick = () => void this.backend.cancel();
    return b;
  }

  private stopTouchTimer(): void {
    if (this.touchTimer) clearInterval(this.touchTimer);
    this.touchTimer = null;
  }

  private onKeyPrompt(p: KeyPrompt): void {
    if (!this.dialog) return;
    this.stopTouchTimer();
    switch (p.kind) {
      case "choose-key": {
        const buttons = p.keys.map((k, i) => {
          const b = h("button", { class: "key-choice", "data-testid": "key-choice" }, describeKey(k));
          b.onclick = () => {
            void this.backend.answerChoice(i);
            this.setDialogBody(h("p", { class: "muted" }, "Using that key…"));
          };
          return b;
        });
        const cancel = h("button", { "data-testid": "key-choice-cancel" }, "Cancel");
        cancel.onclick = () => void this.backend.answerChoice(null);
        this.setDialogBody(h("p", {}, "Several security keys are connected. Which one?"), ...buttons, h("div", { class: "actions" }, cancel));
        break;
      }
      case "pin": {
        const input = h("input", { type: "password", autocomplete: "off", "data-testid": "pin", "aria-label": "Security key PIN" });
        const ok = h("button", { class: "primary", "data-testid": "pin-ok" }, "OK");
        const submit = () => {
          const pin = input.value;
          input.value = "";
          void this.backend.answerPin(pin);
          this.setDialogBody(h("p", { class: "muted" }, "Checking the PIN…"));
        };
        ok.onclick = submit;
        input.onkeydown = (e) => {
          if (e.key === "Enter") submit();
        };
        const cancel = h("button", { "data-testid": "pin-cancel" }, "Cancel");
        cancel.onclick = () => void this.backend.answerPin(null);
        const retries = p.retriesLeft === null ? "" : ` (${p.retriesLeft} retries left)`;
        this.setDialogBody(
          p.previousWrong ? h("p", { class: "error", "data-testid": "pin-wrong" }, "Wrong PIN.") : document.createTextNode(""),
          h("label", {}, `Security key PIN${retries}`),
          input,
          p.retriesLeft !== null && p.retriesLeft <= 3
            ? h("p", { class: "warning" }, `Only ${p.retriesLeft} tries left before the key blocks.`)
            : document.createTextNode(""),
          h("div", { class: "actions" }, ok, cancel),
        );
        input.focus();
        break;
      }
      case "last-retry": {
        const yes = h("button", { class: "danger", "data-testid": "spend-last" }, "Use my last try");
        const no = h("button", {}, "Stop");
        yes.onclick = () => void this.backend.answerLastRetry(true);
        no.onclick = () => void this.backend.answerLastRetry(false);
        this.setDialogBody(
          h("p", { class: "warning" }, "Only ONE PIN try is left. A wrong PIN now blocks this key for good."),
          h("div", { class: "actions" }, yes, no),
        );
        break;
      }
      case "touch": {
        let left = TOUCH_SECONDS;
        const count = h("span", { "data-testid": "touch-countdown" }, `${left} s`);
        this.setDialogBody(
          h("div", { class: "touch", "data-testid": "touch" }, h("div", { class: "pulse" }), h("p", {}, "Touch your security key now")),
          h("p", { class: "muted" }, "Time left: ", count),
          this.cancelButton(),
        );
        this.touchTimer = setInterval(() => {
          left = Math.max(0, left - 1);
          count.textContent = `${left} s`;
        }, 1000);
        break;
      }
      case "processing":
        this.setDialogBody(h("p", { class: "muted" }, "Signing and sending…"));
        break;
    }
  }
}
