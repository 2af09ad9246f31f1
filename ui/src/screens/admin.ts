import { csv, h } from "../dom";
import type { AdminOverview } from "../types";

/** What the admin screen shows. */
export interface AdminState {
  overview: AdminOverview | null;
  /** Why the overview could not be loaded (e.g. not an admin). */
  error: string | null;
  /** The enrollment link created last, shown once. */
  lastInvite: string | null;
  policy: Record<string, unknown> | null;
}

/** What the admin screen does; each reports its own success or failure. */
export interface AdminActions {
  invite(id: string, name: string, roles: string[], groups: string[]): Promise<void>;
  revokeApiKey(id: string): Promise<void>;
  propose(action: { kind: string; details: Record<string, unknown> }): Promise<void>;
}

/** Admin: people and keys, enrollment links, API keys, proposals, the policy. */
export function adminScreen(state: AdminState, act: AdminActions): HTMLElement {
  const section = h("section", { class: "admin", "data-testid": "admin" }, h("h2", {}, "Admin"));
  if (state.error) {
    section.append(h("p", { class: "error", "data-testid": "admin-error" }, state.error));
    return section;
  }
  const a = state.overview;
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
  invite.onclick = () => void act.invite(id.value.trim(), name.value.trim(), csv(roles.value), csv(groups.value));
  section.append(
    h("h3", {}, "Invite a person"),
    h("div", { class: "form" }, id, name, roles, groups, invite),
    state.lastInvite ? h("p", {}, "Single-use link: ", h("code", { "data-testid": "invite-link" }, state.lastInvite)) : "",
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
        revoke.onclick = () => void act.revokeApiKey(k.id);
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
  section.append(...proposals(act.propose));
  section.append(
    h("h3", {}, "Policy in force"),
    h("pre", { class: "policy", "data-testid": "policy" }, state.policy ? JSON.stringify(state.policy, null, 2) : "none"),
    h("p", { class: "muted" }, "A new policy, revocations and lifting a freeze are proposed with the countersign CLI (countersign admin --help)."),
  );
  return section;
}

/** Forms that propose a change: each becomes an operation other admins approve. */
function proposals(propose: AdminActions["propose"]): Node[] {
  const input = (testid: string, placeholder: string, value = "") =>
    h("input", { type: "text", placeholder, value, "data-testid": testid, "aria-label": placeholder });
  // Sets in the canonical form are sorted and without duplicates.
  const set = (v: string) => [...new Set(csv(v))].sort();
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
