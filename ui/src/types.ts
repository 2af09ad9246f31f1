// What the Rust side sends. Operations are `countersign_client::VerifiedOperation`:
// rebuilt from canonical bytes, digest and fingerprint computed in Rust.

export interface RiskSignal {
  signal: string;
  [detail: string]: unknown;
}

export interface Operation {
  operation: {
    id: string;
    created_at: string;
    expires_at: string;
    policy_version: number;
    initiator: { type: string; key_id?: string; owner?: string; source_ip?: string; [k: string]: unknown };
    action: { kind: string; details: Record<string, unknown> };
    [k: string]: unknown;
  };
  digest: string;
  fingerprint: string;
  state: string;
  verdict: {
    verdict?: string;
    quorum?: { groups: { group: string; min: number }[]; rejections_to_veto?: number };
    reasons?: { reason: string; [k: string]: unknown }[];
    expires_at?: string;
  } | null;
  risk: { score?: number; signals?: RiskSignal[] } | null;
}

export interface Status {
  gateway: string;
  approver: string | null;
  loggedIn: boolean;
  /** A software authenticator is in use: the UI shows a permanent warning. */
  softwareKey: boolean;
  /** Demo mode: the software key's PIN, shown so a visitor can type it. */
  demoPin: string | null;
}

export type Decision = "approve" | "reject";

export interface Outcome {
  state: string;
  [k: string]: unknown;
}

export type KeyPrompt =
  | { kind: "pin"; retriesLeft: number | null; previousWrong: boolean }
  | { kind: "last-retry" }
  | { kind: "touch" }
  | { kind: "processing" };

export interface GatewayEvent {
  id: string;
  event: string;
  data: Record<string, unknown>;
}

/** A failure from Rust: `{code, message}`. */
export interface AppError {
  code: string;
  message: string;
}
