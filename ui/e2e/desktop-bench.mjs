// Desktop benchmark (scripts/bench): Countersign Desktop's demo build under Xvfb,
// launched over WebDriver like the end-to-end run.
//
// - start: from asking WebDriver for a new app process to its first screen being
//   interactive: the production build (no demo: the enrollment screen of a new
//   user) and the demo build (login screen; the demo first starts its embedded
//   gateway and enrolls three software keys). Then, in the demo, from sending the
//   PIN to the inbox showing (this includes the demo key's simulated 0.9 s touch).
//   The first launch follows a drop of the page cache where the machine allows it
//   (root): a cold start from disk;
// - memory: resident (RSS) and proportional (PSS, shared pages split) memory of the
//   app and all its WebKit processes, 5 s after the inbox shows, with an idle
//   inbox and with 10,000 withdrawals waiting (COUNTERSIGN_DEMO_BACKLOG). The demo
//   build embeds the gateway, so its memory is in the app's figure too.
//
//   xvfb-run -a node ui/e2e/desktop-bench.mjs <demo build> [--quick] [--production <build>]
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Driver, until } from "./webdriver.mjs";

const app = process.argv[2];
if (!app) throw new Error("usage: node desktop-bench.mjs <demo build> [--quick] [--production <build>]");
const quick = process.argv.includes("--quick");
const production = process.argv.includes("--production") ? process.argv[process.argv.indexOf("--production") + 1] : null;

/** Every process under `pid` (children, their children, …), from /proc. */
function tree(pid) {
  const children = new Map();
  for (const p of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(p)]);
    } catch {
      /* gone */
    }
  }
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...(children.get(all[i]) ?? []));
  return all;
}

/** RSS and PSS in MB of these processes, with their names. */
function memory(pids) {
  let rss = 0;
  let pss = 0;
  const names = [];
  const each = [];
  for (const pid of pids) {
    try {
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
      const kb = (field) => Number((rollup.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m")) ?? [0, 0])[1]);
      rss += kb("Rss");
      pss += kb("Pss");
      const name = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      names.push(name);
      each.push({ process: name, rss_mb: kb("Rss") / 1024, pss_mb: kb("Pss") / 1024 });
    } catch {
      /* gone */
    }
  }
  return { rss_mb: rss / 1024, pss_mb: pss / 1024, processes: names, each };
}

/** The app process WebKitWebDriver started (the newest one from this binary). */
function appPid(app) {
  const pids = readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0")[0] === app;
      } catch {
        return false;
      }
    })
    .map(Number);
  return pids.sort((a, b) => statSync(`/proc/${b}`).ctimeMs - statSync(`/proc/${a}`).ctimeMs)[0];
}

function dropCaches() {
  try {
    execFileSync("sync");
    writeFileSync("/proc/sys/vm/drop_caches", "3\n");
    return true;
  } catch {
    return false;
  }
}

async function launch(label, { binary = app, demo = true, backlog = 0, cold = false }) {
  const dir = mkdtempSync(join(tmpdir(), "countersign-bench-"));
  // A new user: an empty home (no profile, no window state).
  const driver = new Driver({ HOME: dir, COUNTERSIGN_DEMO_DIR: dir, COUNTERSIGN_DEMO_BACKLOG: String(backlog) });
  try {
    await until("tauri-driver", async () => (await fetch(`${driver.base}/status`)).ok, 20_000);
    const dropped = cold ? dropCaches() : false;
    const t0 = performance.now();
    await driver.launch(binary, demo ? ["--demo"] : []);
    const first = await until("first screen", async () => (await driver.find(demo ? "login" : "enroll")) ?? null, 60_000);
    const ready = performance.now() - t0;
    const result = { launch: label, build: demo ? "demo" : "production", backlog, cold_cache: dropped, window_ready_ms: ready };
    let line = `${label.padEnd(34)} window ${ready.toFixed(0).padStart(5)} ms`;
    if (demo) {
      await driver.click(first);
      await driver.type(await until("PIN field", () => driver.find("pin")), "4821");
      const t1 = performance.now();
      await driver.click(await driver.find("pin-ok"));
      const inbox = await until(
        "the inbox",
        async () => {
          const el = await driver.find("inbox");
          return backlog === 0 || (await driver.findAll("row")).length > 0 ? el : null;
        },
        90_000,
      );
      result.login_to_inbox_ms = performance.now() - t1;
      result.inbox_title = ((await driver.text(inbox)).match(/Waiting for approval \(\d+\)|Nothing is waiting/) ?? ["?"])[0];
      line += `, PIN→inbox ${result.login_to_inbox_ms.toFixed(0).padStart(5)} ms ("${result.inbox_title}")`;
    }
    await new Promise((r) => setTimeout(r, 5000));
    Object.assign(result, memory(tree(appPid(binary))));
    console.log(
      `${line}, RSS ${result.rss_mb.toFixed(0)} MB, PSS ${result.pss_mb.toFixed(0)} MB: ` +
        result.each.map((p) => `${p.process} ${p.pss_mb.toFixed(0)}`).join(", "),
    );
    return result;
  } finally {
    await driver.quit();
  }
}

const runs = [];
if (production) {
  runs.push(await launch("production build, cold page cache", { binary: production, demo: false, cold: true }));
  if (!quick) runs.push(await launch("production build, warm", { binary: production, demo: false }));
}
runs.push(await launch("demo, idle inbox, cold page cache", { cold: true }));
if (!quick) runs.push(await launch("demo, idle inbox, warm", {}));
runs.push(await launch("demo, 10,000 waiting, warm", { backlog: 10_000 }));
const sizes = { demo_mb: statSync(app).size / 1e6, production_mb: production ? statSync(production).size / 1e6 : null };
mkdirSync("results", { recursive: true });
writeFileSync(
  "results/bench-desktop.json",
  JSON.stringify({ benchmark: "desktop", quick, binaries: { demo: app, production }, ...sizes, runs }, null, 2) + "\n",
);
console.log(`binaries: demo ${sizes.demo_mb.toFixed(1)} MB` + (production ? `, production ${sizes.production_mb.toFixed(1)} MB` : ""));
console.log("written: results/bench-desktop.json");
