import { h } from "../dom";
import { amountLine, destination } from "../format";
import type { Operation } from "../types";

/** History: operations decided recently, newest first; a click selects one. */
export function historyList(history: Operation[], selected: string | null, onSelect: (id: string) => void): HTMLElement {
  const section = h("section", { class: "history", "data-testid": "history", "aria-label": "Decided operations" });
  section.append(h("h2", {}, `Decided recently (${history.length})`));
  if (history.length === 0) {
    section.append(h("p", { class: "muted" }, "Nothing decided yet."));
    return section;
  }
  const table = h("table", { class: "list" }, h("tr", {}, h("th", {}, "outcome"), h("th", {}, "requested"), h("th", {}, "what"), h("th", {}, "to")));
  for (const op of history) {
    const { amount } = amountLine(op);
    const row = h(
      "tr",
      { "data-testid": "history-row", "data-id": op.operation.id, class: op.operation.id === selected ? "selected" : "" },
      h("td", {}, h("span", { class: `state state-${op.state}` }, op.state)),
      h("td", { class: "when" }, op.operation.created_at.replace("T", " ").replace("Z", "")),
      h("td", {}, amount),
      h("td", { class: "to" }, destination(op)),
    );
    row.onclick = () => onSelect(op.operation.id);
    table.append(row);
  }
  section.append(table);
  return section;
}
