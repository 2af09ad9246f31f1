// Browser test: the built UI (fake backend) in Debian's Chromium, driven with
// playwright-core. Clicks inbox -> detail -> approve (wrong PIN, right PIN, touch)
// -> success, and a cancelled touch; saves screenshots for the README.
import { createServer } from "node:http";
import { readFile, mkdir } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = fileURLToPath(new URL(".", import.meta.url));
const dist = join(here, "..", "dist-fake"); // `npm run build:fake`: the UI with the fake backend
const shots = join(here, "..", "..", "docs", "screenshots");
const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml" };

const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^\/+/, "");
  try {
    const body = await readFile(join(dist, path || "index.html"));
    res.writeHead(200, { "content-type": types[extname(path)] ?? "text/html" });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const base = `http://127.0.0.1:${server.address().port}/`;
await mkdir(shots, { recursive: true });

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
let failures = 0;
async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}
function expect(cond, what) {
  if (!cond) throw new Error(what);
}

await check("the desktop's bundle (ui/dist) carries no fake backend", async () => {
  const { readdir } = await import("node:fs/promises");
  const prod = join(here, "..", "dist", "assets");
  const files = await readdir(prod);
  expect(files.some((f) => f.endsWith(".js")), `ui/dist is built (${files})`);
  for (const f of files) {
    const text = await readFile(join(prod, f), "utf8");
    expect(!f.startsWith("fake-backend") && !text.includes("fake.gateway"), `${f} carries the fake backend`);
  }
  const fake = await readdir(join(dist, "assets"));
  expect(fake.some((f) => f.startsWith("fake-backend")), "the browser tests' build has it");
});

for (const scheme of ["light", "dark"]) {
  await check(`approve flow (${scheme})`, async () => {
    const page = await browser.newPage({ colorScheme: scheme, viewport: { width: 1200, height: 760 } });
    await page.goto(`${base}?ops=12`);
    await page.getByTestId("software-banner").waitFor();
    await page.getByTestId("login").click();
    await page.getByTestId("pin").fill("4821");
    await page.getByTestId("pin-ok").click();
    await page.getByTestId("row").first().waitFor();
    expect((await page.getByTestId("row").count()) === 12, "12 rows");
    await page.getByTestId("row").first().click();
    await page.getByTestId("fingerprint").waitFor();
    await page.screenshot({ path: join(shots, `detail-${scheme}.png`) });
    await page.getByTestId("approve").click();
    await page.getByTestId("pin").fill("0000");
    if (scheme === "light") await page.screenshot({ path: join(shots, "pin.png") });
    await page.getByTestId("pin-ok").click();
    await page.getByTestId("pin-wrong").waitFor();
    await page.getByTestId("pin").fill("4821");
    await page.getByTestId("pin-ok").click();
    await page.getByTestId("dialog").waitFor({ state: "detached" });
    const toast = await page.locator("#toast").textContent();
    expect(toast.includes("Approved"), `toast: ${toast}`);
    await page.close();
  });
}

await check("history, admin and settings screens", async () => {
  const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  await page.goto(`${base}?ops=3&decided=4`);
  await page.getByTestId("login").click();
  await page.getByTestId("pin").fill("4821");
  await page.getByTestId("pin-ok").click();
  await page.getByTestId("row").first().waitFor();
  await page.getByTestId("tab-history").click();
  await page.getByTestId("history-row").first().waitFor();
  expect((await page.getByTestId("history-row").count()) === 4, "4 decided operations");
  await page.getByTestId("history-row").nth(1).click();
  await page.getByTestId("final-state").waitFor();
  await page.screenshot({ path: join(shots, "history.png") });
  await page.getByTestId("tab-admin").click();
  await page.getByTestId("approver-row").first().waitFor();
  await page.getByTestId("invite-id").fill("dave");
  await page.getByTestId("invite-name").fill("Dave Okafor");
  await page.getByTestId("invite-groups").fill("traders");
  await page.getByTestId("invite").click();
  await page.getByTestId("invite-link").waitFor();
  await page.screenshot({ path: join(shots, "admin.png") });
  await page.getByTestId("tab-settings").click();
  await page.getByTestId("pinned-key").waitFor();
  await page.screenshot({ path: join(shots, "settings.png") });
  await page.close();
});

await check("first run: enroll from a link", async () => {
  const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  await page.goto(`${base}?first-run`);
  await page.getByTestId("enroll-link").fill("countersign://enroll?gateway=https%3A%2F%2Fgw.example&code=K7QF2M&pin=sha256%2F…");
  await page.screenshot({ path: join(shots, "enroll.png") });
  await page.getByTestId("enroll").click();
  await page.getByTestId("pin").fill("4821");
  await page.getByTestId("pin-ok").click();
  await page.getByTestId("login").waitFor();
  await page.close();
});

await check("a cancelled touch is a clear error", async () => {
  const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  await page.goto(`${base}?never-touched`);
  await page.getByTestId("login").click();
  await page.getByTestId("pin").fill("4821");
  await page.getByTestId("pin-ok").click();
  await page.getByTestId("touch").waitFor();
  await page.screenshot({ path: join(shots, "touch.png") });
  await page.getByTestId("cancel").click();
  const err = await page.getByTestId("dialog-error").textContent();
  expect(err === "cancelled [key.cancelled]", `error: ${err}`);
  await page.close();
});

await check("10,000 pending operations scroll smoothly", async () => {
  const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  await page.goto(`${base}?ops=10000`);
  await page.getByTestId("login").click();
  await page.getByTestId("pin").fill("4821");
  await page.getByTestId("pin-ok").click();
  await page.getByTestId("row").first().waitFor();
  const frame = await page.evaluate(async () => {
    const v = document.querySelector(".viewport");
    const times = [];
    for (let i = 0; i < 60; i++) {
      const t = performance.now();
      v.scrollTop += 900;
      v.dispatchEvent(new Event("scroll"));
      await new Promise((r) => requestAnimationFrame(r));
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    return { p50: times[30], p95: times[57], rows: document.querySelectorAll("[data-testid=row]").length };
  });
  console.log(`     scroll frame p50 ${frame.p50.toFixed(1)} ms, p95 ${frame.p95.toFixed(1)} ms, ${frame.rows} rows in the DOM`);
  expect(frame.rows < 60, `rows in DOM: ${frame.rows}`);
  await page.screenshot({ path: join(shots, "inbox-10000.png") });
  await page.close();
});

await browser.close();
server.close();
if (failures) {
  console.log(`${failures} browser check(s) failed`);
  process.exit(1);
}
console.log(`browser checks passed; screenshots in ${shots}`);
