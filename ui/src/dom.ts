import type { AppError } from "./types";

/** Build an element. Text is always set as text, never parsed as HTML: operation
 * fields come from outside and must not be able to inject markup. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/** "a, b ,c" -> ["a", "b", "c"]. */
export function csv(v: string): string[] {
  return v.split(",").map((x) => x.trim()).filter(Boolean);
}

/** A failure from Rust (`{code, message}`) or anything thrown, in one line. */
export function errorText(e: unknown): string {
  const err = e as Partial<AppError>;
  if (err && typeof err.message === "string") return err.code ? `${err.message} [${err.code}]` : err.message;
  return String(e);
}
