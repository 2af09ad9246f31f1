// The real app, end to end: Countersign Desktop (demo build: embedded gateway, bot,
// software keys) driven over WebDriver by tauri-driver + WebKitWebDriver under Xvfb.
// Logs in with the PIN, approves a held withdrawal with the key, and checks in the
// gateway's own database that it was released once the colleague approved too.
//
//   xvfb-run -a node ui/e2e/desktop.mjs <path to countersign-desktop>
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const app = process.argv[2];
if (!app) throw new Error("usage: node desktop.mjs <countersign-desktop binary>");
const shots = join(fileURLToPath(new URL(".", import.meta.url)), "..", "..", "docs", "screenshots");
mkdirSync(shots, { recursive: true });
const demoDir = mkdtempSync(join(tmpdir(), "countersign-e2e-"));
const port = 4444 + Math.floor(Math.random() * 1000);
const driver = spawn("tauri-driver", ["--port", String(port), "--native-port", String(port + 1000)], {
  stdio: ["ignore", "inherit", "inherit"],
  env: { ...process.env, COUNTERSIGN_DEMO_DIR: demoDir, WEBKIT_DISABLE_COMPOSITING_MODE: "1", NO_AT_BRIDGE: "1" },
});
const base = `http://127.0.0.1:${port}`;
const started = Date.now();
const log = (m) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${m}`);

async function wd(method, path, body) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json();
  if (!r.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value ?? json)}`);
  return json.value;
}

async function until(what, probe, ms = 60_000) {
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

let session;
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";
const find = async (testid) => (await wd("POST", `/session/${session}/element`, { using: "css selector", value: `[data-testid="${testid}"]` }))[ELEMENT];
const findAll = async (testid) =>
  (await wd("POST", `/session/${session}/elements`, { using: "css selector", value: `[data-testid="${testid}"]` })).map((e) => e[ELEMENT]);
const click = async (el) => wd("POST", `/session/${session}/element/${el}/click`, {});
const type = async (el, text) => wd("POST", `/session/${session}/element/${el}/value`, { text });
const text = async (el) => wd("GET", `/session/${session}/element/${el}/text`);
const attr = async (el, name) => wd("GET", `/session/${session}/element/${el}/attribute/${name}`);
const shot = async (name) => {
  const png = await wd("GET", `/session/${session}/screenshot`);
  writeFileSync(join(shots, name), Buffer.from(png, "base64"));
  log(`screenshot ${name}`);
};
const dbState = (id) =>
  execFileSync("python3", ["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); r=c.execute('select state from operations where id=?',(sys.argv[2],)).fetchone(); print(r[0] if r else '')", join(demoDir, "countersign.db"), id]).toString().trim();

let failed = false;
try {
  await until("tauri-driver", async () => (await fetch(`${base}/status`)).ok, 20_000);
  session = (
    await wd("POST", "/session", {
      capabilities: { alwaysMatch: { "tauri:options": { application: app, args: ["--demo"] } } },
    })
  ).sessionId;
  log("app started");
  const banner = await until("software-key banner", () => find("software-banner"));
  if (!(await text(banner)).includes("SOFTWARE KEY IN USE")) throw new Error("no software-key banner");

  await click(await until("login button", () => find("login")));
  await type(await until("PIN field", () => find("pin")), "4821");
  await shot("desktop-pin.png");
  await click(await find("pin-ok"));
  log("logging in (PIN sent, touch pending)");

  // The bot's first large withdrawal (its 5th order) arrives after ~16 s.
  const row = await until("a held withdrawal in the inbox", async () => (await findAll("row"))[0], 90_000);
  const id = await attr(row, "data-id");
  log(`inbox shows ${id}: ${(await text(row)).replace(/\s+/g, " ")}`);
  if (dbState(id) !== "pending") throw new Error(`gateway state before approval: ${dbState(id)}`);
  await click(row);
  await until("detail", () => find("fingerprint"));
  await shot("desktop-detail.png");

  await click(await find("approve"));
  await type(await until("PIN field", () => find("pin")), "4821");
  await click(await find("pin-ok"));
  await until("touch prompt", () => find("touch"), 20_000).then(() => shot("desktop-touch.png")).catch(() => log("touch prompt not captured"));
  await until("dialog closed", async () => (await findAll("dialog")).length === 0, 30_000);
  log("approved with the key");

  const final = await until("release after the colleague's approval", async () => (dbState(id) === "released" ? "released" : null), 30_000);
  log(`gateway state: ${final}`);
  await shot("desktop-inbox.png");

  // The real app's History screen shows it released (from the gateway, verified in Rust).
  await click(await find("tab-history"));
  const done = await until(
    "the released withdrawal in History",
    async () => {
      for (const r of await findAll("history-row")) if ((await attr(r, "data-id")) === id) return r;
      return null;
    },
    20_000,
  );
  if (!(await text(done)).includes("released")) throw new Error(`history row: ${await text(done)}`);
  log("history shows it released");
  await click(await find("tab-settings"));
  const settings = await until("settings", () => find("settings"));
  if (!(await text(settings)).includes("SOFTWARE KEY")) throw new Error("settings do not name the software key");
  await shot("desktop-settings.png");

  // Secrets stay out of the webview: after logging in and approving, no PIN in its
  // storage, cookies or input fields, and neither of the gateway's keys anywhere in
  // its data or page. (Session tokens live in the Rust process only.)
  const seen = await wd("POST", `/session/${session}/execute/sync`, {
    script:
      "return JSON.stringify({local: {...localStorage}, session: {...sessionStorage}, cookie: document.cookie, inputs: [...document.querySelectorAll('input, textarea')].map(i => i.value)})",
    args: [],
  });
  const page = await wd("GET", `/session/${session}/source`);
  if (seen.includes("4821")) throw new Error(`the PIN is still in the webview's data: ${seen}`);
  const keys = readFileSync(join(demoDir, "gateway-keys"), "utf8").trim();
  for (const [what, value] of [["signing key", keys.slice(0, 64)], ["HMAC master key", keys.slice(64)]]) {
    if (value.length !== 64) throw new Error(`unexpected gateway key file: ${keys.length} characters`);
    if (seen.includes(value) || page.includes(value)) throw new Error(`the gateway's ${what} reached the webview`);
  }
  log(`webview data (${seen.length} bytes of storage, cookies and inputs; ${page.length} bytes of page) holds no PIN or gateway key`);
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e.message}`);
  if (session) await shot("desktop-failure.png").catch(() => {});
} finally {
  if (session) await wd("DELETE", `/session/${session}`).catch(() => {});
  driver.kill();
}
if (failed) process.exit(1);
console.log("desktop end-to-end passed");
