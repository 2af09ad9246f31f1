import type { DecisionCheck, KeyInfo, Operation, RecordedDecision, RiskSignal } from "./types";

/** A risk signal in words an approver can act on. */
export function explainSignal(s: RiskSignal): string {
  switch (s.signal) {
    case "new_destination":
      return "First withdrawal from this account to this address.";
    case "no_baseline":
      return `This API key has too little history to judge (${s.samples} withdrawals in 30 days).`;
    case "above_p95":
      return `Larger than 95% of this key's withdrawals (median ${s.median}, 95th percentile ${s.p95}).`;
    case "new_source_ip":
      return `Sent from ${s.ip}, an address this key has not used in 30 days.`;
    case "unusual_hour":
      return `This key does not usually withdraw at ${s.hour}:00 UTC.`;
    case "velocity_budget":
      return `This key has used ${s.used_percent}% of its velocity budget.`;
    case "new_key":
      return `The API key is only ${s.age_days} days old.`;
    default:
      return s.signal.replace(/_/g, " ");
  }
}

/** A short badge for a signal. */
export function badge(s: RiskSignal): string {
  const names: Record<string, string> = {
    new_destination: "new address",
    no_baseline: "no history",
    above_p95: "unusually large",
    new_source_ip: "new IP",
    unusual_hour: "odd hour",
    velocity_budget: "velocity",
    new_key: "new key",
  };
  return names[s.signal] ?? s.signal;
}

export function details(op: Operation): Record<string, unknown> {
  return op.operation.action.details ?? {};
}

/** "12.5 ETH" and "≈ 37,500 USD". */
export function amountLine(op: Operation): { amount: string; reference: string } {
  const d = details(op) as { amount?: string; asset?: string; reference_value?: { amount?: string; currency?: string } };
  const amount = d.amount && d.asset ? `${d.amount} ${d.asset}` : op.operation.action.kind.replace(/_/g, " ");
  const rv = d.reference_value;
  const reference =
    rv?.amount && rv.currency ? `≈ ${Number(rv.amount).toLocaleString("en-US", { maximumFractionDigits: 2 })} ${rv.currency}` : "";
  return { amount, reference };
}

export function destination(op: Operation): string {
  const d = details(op) as { destination?: { address?: string; memo?: string } };
  const a = d.destination?.address;
  if (!a) return "";
  return d.destination?.memo ? `${a} (memo ${d.destination.memo})` : a;
}

/** "41 min left", "expired". */
export function timeLeft(expiresAt: string, now: number): string {
  const ms = Date.parse(expiresAt) - now;
  if (Number.isNaN(ms)) return "";
  if (ms <= 0) return "expired";
  const min = Math.floor(ms / 60000);
  if (min < 1) return `${Math.ceil(ms / 1000)} s left`;
  if (min < 120) return `${min} min left`;
  return `${Math.floor(min / 60)} h left`;
}

/** "2 of traders". */
export function quorumLine(op: Operation): string {
  const groups = op.verdict?.quorum?.groups ?? [];
  return groups.map((g) => `${g.min} of ${g.group}`).join(" + ");
}

/** Every field of the operation as `path: value`, in order. */
export function flatten(value: unknown, prefix = ""): [string, string][] {
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [`[${i}]`, v] as const) : Object.entries(value);
    return entries.flatMap(([k, v]) => {
      const path = Array.isArray(value) ? `${prefix}${k}` : prefix ? `${prefix}.${k}` : String(k);
      return flatten(v, path);
    });
  }
  return [[prefix, value === null ? "null" : String(value)]];
}

/** One recorded decision in words: who decided what, and what they wrote. */
export function decisionLine(d: RecordedDecision): string {
  const what = d.decision === "approve" ? "approved" : "rejected";
  return `${d.approver} ${what} at ${d.decided_at}${d.reason ? `: “${d.reason}”` : ""}`;
}

/** What the signature says about a recorded decision, and whether that is good. */
export function checkVerdict(c: DecisionCheck): { ok: boolean; text: string } {
  switch (c.verdict) {
    case "signed":
      return { ok: true, text: "Signed by their key, with these words." };
    case "reason_altered":
      return { ok: false, text: "ALTERED: their key signed a different reason. This is not what they wrote." };
    case "reason_unsigned":
      return { ok: false, text: "The decision is signed, but this reason is not (an older client): only the gateway says so." };
    case "key_not_in_registry":
      return { ok: false, text: "Cannot check: the key that signed it is not in the registry (revoked since, or unknown)." };
    case "invalid":
      return { ok: false, text: `INVALID signature: ${c.problem}` };
  }
}

/** A connected key in one line: its label, firmware and PIN tries left. */
export function describeKey(k: KeyInfo): string {
  const parts = [k.software ? `${k.label} (SOFTWARE)` : k.label];
  if (k.firmware) parts.push(`firmware ${k.firmware}`);
  if (k.pin_retries !== undefined && k.pin_retries !== null) parts.push(`${k.pin_retries} PIN tries left`);
  return parts.join(" · ");
}
