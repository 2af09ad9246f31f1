import type { Backend } from "./backend";
import { h } from "./dom";
import { describeKey } from "./format";
import type { KeyPrompt } from "./types";

const TOUCH_SECONDS = 30;

/** The modal dialog of a key ceremony (enroll, log in, decide, freeze): it shows
 * each prompt the key ceremony raises (choose a key, PIN, last retry, touch) and
 * answers it through the backend. */
export class CeremonyDialog {
  private dialog: HTMLElement | null = null;
  private touchTimer: ReturnType<typeof setInterval> | null = null;

  constructor(
    private overlay: HTMLElement,
    private backend: Backend,
  ) {}

  open(title: string): void {
    this.dialog = h("div", { class: "dialog", role: "dialog", "aria-modal": "true", "data-testid": "dialog" });
    this.dialog.append(h("h2", {}, title), h("div", { class: "body" }, h("p", { class: "muted" }, "Starting…")));
    this.overlay.replaceChildren(h("div", { class: "backdrop" }, this.dialog));
  }

  close(): void {
    this.dialog?.parentElement?.remove();
    this.dialog = null;
  }

  /** The ceremony ended with an error: say it, and let the person close. */
  fail(message: string): void {
    const b = h("button", { "data-testid": "dialog-close" }, "Close");
    b.onclick = () => this.close();
    this.setBody(h("p", { class: "error", "data-testid": "dialog-error" }, message), b);
  }

  setBody(...children: Node[]): void {
    this.dialog?.querySelector(".body")?.replaceChildren(...children);
  }

  stopTouchTimer(): void {
    if (this.touchTimer) clearInterval(this.touchTimer);
    this.touchTimer = null;
  }

  private cancelButton(): HTMLElement {
    const b = h("button", { "data-testid": "cancel" }, "Cancel");
    b.onclick = () => void this.backend.cancel();
    return b;
  }

  /** Show what the key ceremony asks of the person now. */
  onKeyPrompt(p: KeyPrompt): void {
    if (!this.dialog) return;
    this.stopTouchTimer();
    switch (p.kind) {
      case "choose-key": {
        const buttons = p.keys.map((k, i) => {
          const b = h("button", { class: "key-choice", "data-testid": "key-choice" }, describeKey(k));
          b.onclick = () => {
            void this.backend.answerChoice(i);
            this.setBody(h("p", { class: "muted" }, "Using that key…"));
          };
          return b;
        });
        const cancel = h("button", { "data-testid": "key-choice-cancel" }, "Cancel");
        cancel.onclick = () => void this.backend.answerChoice(null);
        this.setBody(h("p", {}, "Several security keys are connected. Which one?"), ...buttons, h("div", { class: "actions" }, cancel));
        break;
      }
      case "pin": {
        const input = h("input", { type: "password", autocomplete: "off", "data-testid": "pin", "aria-label": "Security key PIN" });
        const ok = h("button", { class: "primary", "data-testid": "pin-ok" }, "OK");
        const submit = () => {
          const pin = input.value;
          input.value = "";
          void this.backend.answerPin(pin);
          this.setBody(h("p", { class: "muted" }, "Checking the PIN…"));
        };
        ok.onclick = submit;
        input.onkeydown = (e) => {
          if (e.key === "Enter") submit();
        };
        const cancel = h("button", { "data-testid": "pin-cancel" }, "Cancel");
        cancel.onclick = () => void this.backend.answerPin(null);
        const retries = p.retriesLeft === null ? "" : ` (${p.retriesLeft} retries left)`;
        this.setBody(
          p.previousWrong ? h("p", { class: "error", "data-testid": "pin-wrong" }, "Wrong PIN.") : document.createTextNode(""),
          h("label", {}, `Security key PIN${retries}`),
          input,
          p.retriesLeft !== null && p.retriesLeft <= 3
            ? h("p", { class: "warning" }, `Only ${p.retriesLeft} tries left before the key blocks.`)
            : document.createTextNode(""),
          h("div", { class: "actions" }, ok, cancel),
        );
        input.focus();
        break;
      }
      case "last-retry": {
        const yes = h("button", { class: "danger", "data-testid": "spend-last" }, "Use my last try");
        const no = h("button", {}, "Stop");
        yes.onclick = () => void this.backend.answerLastRetry(true);
        no.onclick = () => void this.backend.answerLastRetry(false);
        this.setBody(
          h("p", { class: "warning" }, "Only ONE PIN try is left. A wrong PIN now blocks this key for good."),
          h("div", { class: "actions" }, yes, no),
        );
        break;
      }
      case "touch": {
        let left = TOUCH_SECONDS;
        const count = h("span", { "data-testid": "touch-countdown" }, `${left} s`);
        this.setBody(
          h("div", { class: "touch", "data-testid": "touch" }, h("div", { class: "pulse" }), h("p", {}, "Touch your security key now")),
          h("p", { class: "muted" }, "Time left: ", count),
          this.cancelButton(),
        );
        this.touchTimer = setInterval(() => {
          left = Math.max(0, left - 1);
          count.textContent = `${left} s`;
        }, 1000);
        break;
      }
      case "processing":
        this.setBody(h("p", { class: "muted" }, "Signing and sending…"));
        break;
    }
  }
}
