import { invoke } from "@tauri-apps/api/core";
import { listen } from "@tauri-apps/api/event";
import type { Backend } from "./backend";
import type { Decision, GatewayEvent, KeyPrompt, Operation, Outcome, Status } from "./types";

/** The real backend: one Tauri command per call (see src-tauri/src/commands.rs). */
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
  freeze: (reason: string) => invoke<boolean>("freeze", { reason }),
  onKeyPrompt(handler: (p: KeyPrompt) => void) {
    void listen<KeyPrompt>("key-prompt", (e) => handler(e.payload));
  },
  onGatewayEvent(handler: (e: GatewayEvent) => void) {
    void listen<GatewayEvent>("gateway-event", (e) => handler(e.payload));
  },
};
