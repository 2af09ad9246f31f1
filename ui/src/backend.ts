import type { AdminOverview, Decision, GatewayEvent, KeyPrompt, Operation, Outcome, Settings, Status } from "./types";

/** Everything the UI asks of the app. The Tauri implementation calls Rust; the fake
 * one (tests, `vite` in a browser) keeps state in memory. Secrets never cross it:
 * the session stays in Rust, and a PIN is handed over once, to the key ceremony. */
export interface Backend {
  status(): Promise<Status>;
  /** First run: register this key with an enrollment link from an admin. */
  enroll(link: string, label: string): Promise<Status>;
  login(): Promise<Status>;
  /** Forget the session (after idle, or on request): the key is needed again. */
  lock(): Promise<Status>;
  pending(): Promise<Operation[]>;
  /** Ask the gateway for a challenge: the operation as verified in Rust. */
  prepare(id: string, decision: Decision): Promise<Operation>;
  /** Sign the prepared decision with the key (PIN and touch prompts arrive as events). */
  sign(id: string, reason: string | null): Promise<Outcome>;
  answerPin(pin: string | null): Promise<void>;
  answerLastRetry(confirm: boolean): Promise<void>;
  /** Which key, when several are connected (`null` cancels). */
  answerChoice(index: number | null): Promise<void>;
  cancel(): Promise<void>;
  freeze(reason: string): Promise<boolean>;
  /** A founding person signs the genesis draft, only if it hashes to `hash`. */
  signGenesis(hash: string): Promise<{ sealed: boolean; missing: number }>;
  /** Recently decided operations, newest first. */
  history(): Promise<Operation[]>;
  settings(): Promise<Settings>;
  /** Admins only (others get `admin.not_an_admin`). */
  adminOverview(): Promise<AdminOverview>;
  /** Admins: an enrollment link for a new person, to hand on over a trusted channel. */
  adminInvite(id: string, name: string, roles: string[], groups: string[]): Promise<string>;
  /** Admins: revoke an API key at once. */
  adminRevokeApiKey(id: string): Promise<void>;
  /** The policy in force (any approver). */
  policy(): Promise<Record<string, unknown> | null>;
  /** Admins: propose a change (`{kind, details}`) for the admin quorum; the operation comes back verified. */
  adminPropose(action: { kind: string; details: Record<string, unknown> }): Promise<Operation>;
  onKeyPrompt(handler: (p: KeyPrompt) => void): void;
  onGatewayEvent(handler: (e: GatewayEvent) => void): void;
}
