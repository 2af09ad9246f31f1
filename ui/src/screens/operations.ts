import { h } from "../dom";
import { amountLine, badge, checkVerdict, decisionLine, destination, explainSignal, flatten, quorumLine, timeLeft } from "../format";
import type { Decision, Operation } from "../types";

const ROW_HEIGHT = 76;

/** What the detail's controls do (pending operations only). */
export interface DetailActions {
  decide(op: Operation, decision: Decision, reason: string | null): Promise<void>;
  /** A control refused to act, with why. */
  refuse(message: string): void;
}

/** The inbox: pending operations, newest first, in a windowed list. */
export function inboxList(ops: Operation[], selected: string | null, now: () => number, onSelect: (id: string) => void): HTMLElement {
  const list = h("section", { class: "inbox", "data-testid": "inbox", "aria-label": "Pending operations" });
  const title = h("h2", {}, `Waiting for approval (${ops.length})`);
  if (ops.length === 0) {
    list.append(title, h("p", { class: "muted" }, "Nothing is waiting. New requests appear here as they arrive."));
    return list;
  }
  // A windowed list: only the rows in view are in the DOM, so 10,000 stay smooth.
  const viewport = h("div", { class: "viewport" });
  const spacer = h("div", { class: "spacer" });
  spacer.style.height = `${ops.length * ROW_HEIGHT}px`;
  viewport.append(spacer);
  const draw = () => {
    const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - 5);
    const visible = Math.ceil((viewport.clientHeight || 800) / ROW_HEIGHT) + 10;
    const rows = ops.slice(first, first + visible).map((op, i) => row(op, first + i, selected === op.operation.id, now, onSelect));
    spacer.replaceChildren(...rows);
  };
  viewport.onscroll = draw;
  draw();
  list.append(title, viewport);
  return list;
}

function row(op: Operation, index: number, isSelected: boolean, now: () => number, onSelect: (id: string) => void): HTMLElement {
  const { amount, reference } = amountLine(op);
  const id = op.operation.id;
  const row = h(
    "button",
    {
      class: `row${isSelected ? " selected" : ""}`,
      "data-testid": "row",
      "data-id": id,
    },
    h("div", { class: "amount" }, amount, h("span", { class: "muted" }, ` ${reference}`)),
    h("div", { class: "dest" }, destination(op)),
    h(
      "div",
      { class: "meta" },
      ...(op.risk?.signals ?? []).map((s) => h("span", { class: "badge" }, badge(s))),
      h("span", { class: "muted" }, ` ${timeLeft(op.operation.expires_at, now())} · needs ${quorumLine(op)}`),
    ),
  );
  row.style.top = `${index * ROW_HEIGHT}px`;
  row.onclick = () => onSelect(id);
  return row;
}

/** Every detail of one operation; with `act`, the approve and reject controls. */
export function operationDetail(op: Operation | undefined, now: number, act: DetailActions | null): HTMLElement {
  const actions = act !== null;
  if (!op) return h("section", { class: "detail muted" }, "Select an operation to see every detail.");
  const { amount, reference } = amountLine(op);
  const initiator = op.operation.initiator;
  const approve = h("button", { class: "primary", "data-testid": "approve" }, "Approve with key");
  approve.onclick = () => void act?.decide(op, "approve", null);
  const reason = h("input", { type: "text", placeholder: "Reason (required to reject)", "data-testid": "reason" });
  const reject = h("button", { class: "danger", "data-testid": "reject" }, "Reject with key");
  reject.onclick = () => {
    if (!reason.value.trim()) {
      act?.refuse("Give a reason to reject.");
      return;
    }
    void act?.decide(op, "reject", reason.value.trim());
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
      actions ? `Needs ${quorumLine(op)}; ${timeLeft(op.operation.expires_at, now)}.` : `Needed ${quorumLine(op)}.`,
    ),
    ...decisions(op),
    h("h3", {}, "Every field (from the canonical operation, checked in this app)"),
    h(
      "table",
      { class: "fields" },
      ...flatten(op.operation).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))),
      h("tr", {}, h("th", {}, "digest"), h("td", {}, op.digest)),
    ),
    actions ? h("div", { class: "actions" }, approve, reason, reject) : h("p", { class: "muted", "data-testid": "final-state" }, `Outcome: ${op.state}.`),
  );
}

/** The decisions so far, each with what its signature says (checked in Rust). */
function decisions(op: Operation): HTMLElement[] {
  const recorded = op.decisions ?? [];
  if (recorded.length === 0) return [];
  return [
    h("h3", {}, "Decisions"),
    h(
      "ul",
      { class: "decisions" },
      ...recorded.map((d) => {
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
