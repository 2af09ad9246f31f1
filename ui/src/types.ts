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
  /** Decisions so far, each checked in Rust against the key that signed it. */
  decisions?: RecordedDecision[];
}

/** `countersign_core::certificate::DecisionCheck`: what the signature says. */
export type DecisionCheck =
  | { verdict: "signed" }
  | { verdict: "reason_altered" }
  | { verdict: "reason_unsigned" }
  | { verdict: "key_not_in_registry" }
  | { verdict: "invalid"; problem: string };

/** `countersign_client::CheckedDecision`. */
export interface RecordedDecision {
  approver: string;
  decision: Decision;
  reason: string | null;
  decided_at: string;
  check: DecisionCheck;
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

/** A connected key, as `countersign_keys::KeyInfo` describes it. */
export interface KeyInfo {
  label: string;
  aaguid?: string | null;
  firmware?: string | null;
  pin_set?: boolean;
  pin_retries?: number | null;
  software?: boolean;
}

export type KeyPrompt =
  | { kind: "choose-key"; keys: KeyInfo[] }
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

/** What this app is connected to and with which key (nothing secret). */
export interface Settings {
  gateway: string | null;
  /** `sha256/<base64url>` of the gateway's public key, pinned at enrollment. */
  pinnedKey: string | null;
  approver: string | null;
  profileDir: string | null;
  softwareKey: boolean;
  keys: KeyInfo[] | { error: string };
  /** The authority chain, verified by the app from its genesis; a draft genesis
   * still being signed by the founding people; null before either. */
  authority:
    | { genesis: string; pinned: boolean; head: { index: number; hash: string }; links: number }
    | { draft: { hash: string; missing: string[]; yours: boolean } }
    | { error: string }
    | null;
}

export interface ApproverView {
  id: string;
  display_name: string;
  roles: string[];
  groups: string[];
  revoked?: boolean;
  credentials: { id: string; label: string; status: string; software?: boolean }[];
}

export interface ApiKeyView {
  id: string;
  owner: string;
  label: string;
  algorithm: string;
  scopes: string[];
  ip_allowlist: string[];
  max_reference_value: string | null;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
  last_used_ip: string | null;
}

export interface AdminOverview {
  approvers: ApproverView[];
  apiKeys: ApiKeyView[];
}
