import "./style.css";
import { App } from "./app";
import type { Backend } from "./backend";

async function backend(): Promise<Backend> {
  // Inside Countersign Desktop the Tauri bridge exists; in a plain browser (`vite`,
  // the browser tests) the UI runs against the fake backend.
  if ("__TAURI_INTERNALS__" in window) return (await import("./tauri-backend")).tauriBackend;
  // The fake backend exists only in development and the browser tests' build: Vite
  // replaces these constants, so the production bundle does not contain it.
  if (!import.meta.env.DEV && import.meta.env.MODE !== "fake") {
    throw new Error("Countersign runs inside Countersign Desktop; this page has no backend.");
  }
  const params = new URLSearchParams(location.search);
  const count = Number(params.get("ops") ?? "2");
  const { FakeBackend, sampleOperation } = await import("./fake-backend");
  const outcomes = ["released", "rejected", "expired", "released"];
  const decided = Array.from({ length: Number(params.get("decided") ?? "0") }, (_, i) => {
    const op = sampleOperation(count + i + 1, String(2 + i * 7));
    op.state = outcomes[i % outcomes.length];
    // What the Rust side reports for each decision, its signature checked there.
    const at = op.operation.created_at;
    const signed = { verdict: "signed" } as const;
    if (op.state === "released")
      op.decisions = [
        { approver: "carol", decision: "approve", reason: null, decided_at: at, check: signed },
        { approver: "dave", decision: "approve", reason: null, decided_at: at, check: signed },
      ];
    if (op.state === "rejected")
      op.decisions = [{ approver: "carol", decision: "reject", reason: "not a destination we use", decided_at: at, check: signed }];
    return op;
  });
  return new FakeBackend({
    operations: [...Array.from({ length: count }, (_, i) => sampleOperation(i + 1, String(10 + (i % 50)))), ...decided],
    neverTouched: params.has("never-touched"),
    unenrolled: params.has("first-run"),
  });
}

const root = document.getElementById("app");
if (root) {
  const b = await backend();
  const app = new App(root, b);
  await app.start();
  (window as unknown as { countersign: unknown }).countersign = { app, backend: b };
}
