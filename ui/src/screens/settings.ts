import { h } from "../dom";
import { describeKey } from "../format";
import type { Settings } from "../types";

/** Settings: what this app is connected to and with which key (nothing secret). */
/** What the settings screen can ask of the app. */
export interface SettingsActions {
  /** Sign the genesis draft with the key, if it hashes to `hash`. */
  signGenesis(hash: string): void;
}

export function settingsScreen(s: Settings | null, idleMs: number, actions: SettingsActions): HTMLElement {
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
    ["Locks after", `${Math.round(idleMs / 60000)} minutes without input`],
    ["Authority chain", authority(s.authority, actions)],
  ];
  section.append(h("table", { class: "fields" }, ...rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))));
  section.append(h("p", { class: "muted" }, "The pinned key came from your enrollment link: the app talks to no other gateway key. To change gateways, enroll again with a new link."));
  return section;
}

/** Hex in groups of four, to read aloud. */
const grouped = (hex: string) => hex.match(/.{1,4}/g)?.join(" ") ?? hex;

function authority(a: Settings["authority"], actions: SettingsActions): Node {
  if (a === null) return h("span", {}, "no genesis yet: who may approve is still the gateway's word");
  if ("error" in a) return h("span", { class: "error" }, a.error);
  if ("draft" in a) return draft(a.draft, actions);
  return h(
    "div",
    { "data-testid": "authority" },
    h("div", {}, "Genesis", h("code", { class: "genesis" }, grouped(a.genesis))),
    h(
      "div",
      {},
      a.head.index === 0 ? "Head: the genesis (no change of authority yet)" : `Head: link ${a.head.index} of ${a.links}, `,
      a.head.index === 0 ? "" : h("code", {}, grouped(a.head.hash.slice(0, 16))),
    ),
    a.pinned
      ? h("p", { class: "muted", "data-testid": "genesis-pinned" }, "Pinned in your profile (you compared it when you signed it): the app verifies the chain from it, and refuses another.")
      : h("p", { class: "error" }, "Not pinned: verified only from the genesis this gateway serves. Compare it with your admins: it is what settlement pins."),
  );
}

/** A genesis still being signed: its hash, who has yet to sign, and (for a founding
 * person) the signature — only after they type the hash they compared with the others. */
function draft(d: { hash: string; missing: string[]; yours: boolean }, actions: SettingsActions): Node {
  const box = h(
    "div",
    { "data-testid": "genesis-draft" },
    h("div", {}, "Genesis being signed", h("code", { class: "genesis" }, grouped(d.hash))),
    h("div", {}, `Waiting for: ${d.missing.join(", ") || "nobody"}`),
  );
  if (!d.yours) return box;
  const typed = h("input", {
    "data-testid": "genesis-hash",
    placeholder: "the genesis hash you compared with the other founding people",
    "aria-label": "Genesis hash you compared",
  }) as HTMLInputElement;
  const sign = h("button", { "data-testid": "sign-genesis" }, "Sign the genesis with your key");
  sign.onclick = () => actions.signGenesis(typed.value);
  box.append(
    h("p", { class: "muted" }, "Compare this hash with every founding person over a channel you trust (in person, a call), then type it to sign. Settlement will pin it."),
    h("div", { class: "actions" }, typed, sign),
  );
  return box;
}
