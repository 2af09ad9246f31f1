// The real app, end to end: Countersign Desktop (demo build: embedded gateway, bot,
// software keys) driven over WebDriver by tauri-driver + WebKitWebDriver under Xvfb.
// Logs in with the PIN, approves a held withdrawal with the key, and checks in the
// gateway's own database that it was released once the colleague approved too.
//
//   xvfb-run -a node ui/e2e/desktop.mjs <path to countersign-desktop>
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Driver, until } from "./webdriver.mjs";

const app = process.argv[2];
if (!app) throw new Error("usage: node desktop.mjs <countersign-desktop binary>");
const shots = join(fileURLToPath(new URL(".", import.meta.url)), "..", "..", "docs", "screenshots");
mkdirSync(shots, { recursive: true });
const demoDir = mkdtempSync(join(tmpdir(), "countersign-e2e-"));
const driver = new Driver({ COUNTERSIGN_DEMO_DIR: demoDir });
const started = Date.now();
const log = (m) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${m}`);
const find = (testid) => driver.find(testid);
const findAll = (testid) => driver.findAll(testid);
const click = (el) => driver.click(el);
const type = (el, text) => driver.type(el, text);
const text = (el) => driver.text(el);
const attr = (el, name) => driver.attr(el, name);
const shot = async (name) => {
  writeFileSync(join(shots, name), Buffer.from(await driver.screenshot(), "base64"));
  log(`screenshot ${name}`);
};
const dbState = (id) =>
  execFileSync("python3", ["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); r=c.execute('select state from operations where id=?',(sys.argv[2],)).fetchone(); print(r[0] if r else '')", join(demoDir, "countersign.db"), id]).toString().trim();

let failed = false;
try {
  await driver.launch(app, ["--demo"]);
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
  // The demo's founding people signed the genesis: the app verified the chain itself.
  const chain = await until("authority", () => find("authority"));
  if (!/Genesis\s*[0-9a-f]{4} [0-9a-f]{4}/.test(await text(chain))) throw new Error(`authority: ${await text(chain)}`);
  log("settings show the genesis the app verified");
  await shot("desktop-settings.png");

  // Secrets stay out of the webview: after logging in and approving, no PIN in its
  // storage, cookies or input fields, and neither of the gateway's keys anywhere in
  // its data or page. (Session tokens live in the Rust process only.)
  const seen = await driver.script(
    "return JSON.stringify({local: {...localStorage}, session: {...sessionStorage}, cookie: document.cookie, inputs: [...document.querySelectorAll('input, textarea')].map(i => i.value)})",
  );
  const page = await driver.wd("GET", driver.s("/source"));
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
  if (driver.session) await shot("desktop-failure.png").catch(() => {});
} finally {
  await driver.quit();
}
if (failed) process.exit(1);
console.log("desktop end-to-end passed");
