import { invoke } from "@tauri-apps/api/core";
import { listen } from "@tauri-apps/api/event";
import type { Backend } from "./backend";
import type { AdminOverview, Decision, GatewayEvent, KeyPrompt, Operation, Outcome, Settings, Status } from "./types";

/** The real backend: one Tauri command per call (see src-tauri/src/main.rs). */
export const tauriBackend: Backend = {
  status: () => invoke<Status>("status"),
  enroll: (link: string, label: string) => invoke<Status>("enroll", { link, label }),
  login: () => invoke<Status>("login"),
  lock: () => invoke<Status>("lock"),
  pending: () => invoke<Operation[]>("pending"),
  prepare: (id: string, decision: Decision) => invoke<Operation>("prepare_decision", { id, decision }),
  sign: (id: string, reason: string | null) => invoke<Outcome>("sign_decision", { id, reason }),
  answerPin: (pin: string | null) => invoke<void>("answer_pin", { pin }),
  answerLastRetry: (confirm: boolean) => invoke<void>("answer_last_retry", { confirm }),
  cancel: () => invoke<void>("cancel_ceremony"),
  answerChoice: (index: number | null) => invoke<void>("answer_choice", { index }),
  freeze: (reason: string) => invoke<boolean>("freeze", { reason }),
  signGenesis: (hash: string) => invoke<{ sealed: boolean; missing: number }>("sign_genesis", { hash }),
  history: () => invoke<Operation[]>("history"),
  settings: () => invoke<Settings>("settings"),
  adminOverview: () => invoke<AdminOverview>("admin_overview"),
  adminInvite: (id: string, name: string, roles: string[], groups: string[]) =>
    invoke<string>("admin_invite", { id, name, roles, groups }),
  adminRevokeApiKey: (id: string) => invoke<void>("admin_revoke_api_key", { id }),
  policy: () => invoke<Record<string, unknown> | null>("policy"),
  adminPropose: (action: { kind: string; details: Record<string, unknown> }) => invoke<Operation>("admin_propose", { action }),
  onKeyPrompt(handler: (p: KeyPrompt) => void) {
    void listen<KeyPrompt>("key-prompt", (e) => handler(e.payload));
  },
  onGatewayEvent(handler: (e: GatewayEvent) => void) {
    void listen<GatewayEvent>("gateway-event", (e) => handler(e.payload));
  },
};
