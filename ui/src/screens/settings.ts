import { h } from "../dom";
import { describeKey } from "../format";
import type { Settings } from "../types";

/** Settings: what this app is connected to and with which key (nothing secret). */
export function settingsScreen(s: Settings | null, idleMs: number): HTMLElement {
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
    ["Authority chain", authority(s.authority)],
  ];
  section.append(h("table", { class: "fields" }, ...rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))));
  section.append(h("p", { class: "muted" }, "The pinned key came from your enrollment link: the app talks to no other gateway key. To change gateways, enroll again with a new link."));
  return section;
}

/** Hex in groups of four, to read aloud. */
const grouped = (hex: string) => hex.match(/.{1,4}/g)?.join(" ") ?? hex;

function authority(a: Settings["authority"]): Node {
  if (a === null) return h("span", {}, "no genesis yet: who may approve is still the gateway's word");
  if ("error" in a) return h("span", { class: "error" }, a.error);
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
    h("p", { class: "muted" }, "Verified by this app from the genesis. Compare the genesis with your admins: it is what settlement pins."),
  );
}
