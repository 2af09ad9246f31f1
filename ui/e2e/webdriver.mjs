// The real app over WebDriver: tauri-driver (+ WebKitWebDriver) launching
// Countersign Desktop. Shared by the end-to-end run (desktop.mjs) and the desktop
// benchmark (desktop-bench.mjs).
import { spawn } from "node:child_process";

const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

/** Poll `probe` every 250 ms until it returns something truthy. */
export async function until(what, probe, ms = 60_000) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export class Driver {
  /** Start tauri-driver on a random port; `env` reaches the app it launches. */
  constructor(env) {
    this.port = 4444 + Math.floor(Math.random() * 1000);
    this.base = `http://127.0.0.1:${this.port}`;
    this.process = spawn("tauri-driver", ["--port", String(this.port), "--native-port", String(this.port + 1000)], {
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, ...env, WEBKIT_DISABLE_COMPOSITING_MODE: "1", NO_AT_BRIDGE: "1" },
    });
    this.session = null;
  }

  async wd(method, path, body) {
    const r = await fetch(`${this.base}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await r.json();
    if (!r.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value ?? json)}`);
    return json.value;
  }

  /** Wait for the driver, then launch the app with `args`. */
  async launch(app, args) {
    await until("tauri-driver", async () => (await fetch(`${this.base}/status`)).ok, 20_000);
    this.session = (
      await this.wd("POST", "/session", { capabilities: { alwaysMatch: { "tauri:options": { application: app, args } } } })
    ).sessionId;
  }

  s(path) {
    return `/session/${this.session}${path}`;
  }
  async find(testid) {
    return (await this.wd("POST", this.s("/element"), { using: "css selector", value: `[data-testid="${testid}"]` }))[ELEMENT];
  }
  async findAll(testid) {
    return (await this.wd("POST", this.s("/elements"), { using: "css selector", value: `[data-testid="${testid}"]` })).map((e) => e[ELEMENT]);
  }
  click(el) {
    return this.wd("POST", this.s(`/element/${el}/click`), {});
  }
  type(el, text) {
    return this.wd("POST", this.s(`/element/${el}/value`), { text });
  }
  text(el) {
    return this.wd("GET", this.s(`/element/${el}/text`));
  }
  attr(el, name) {
    return this.wd("GET", this.s(`/element/${el}/attribute/${name}`));
  }
  script(source) {
    return this.wd("POST", this.s("/execute/sync"), { script: source, args: [] });
  }
  screenshot() {
    return this.wd("GET", this.s("/screenshot"));
  }

  /** Close the app (if launched) and stop the driver. */
  async quit() {
    if (this.session) await this.wd("DELETE", this.s("")).catch(() => {});
    this.session = null;
    this.process.kill();
  }
}
