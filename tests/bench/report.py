"""The benchmarks' summary (scripts/bench): reads results/bench-*.json, prints one
table per benchmark with ratios and each goal met or missed, and draws the plots
(results/*.svg and *.png).

    target/bench-venv/bin/python tests/bench/report.py [results]
"""
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = sys.argv[1] if len(sys.argv) > 1 else "results"
STORES = ["sqlite", "postgresql"]


def load(name, missing=None):
    """A result file, or None (saying what did not run, if `missing` is given)."""
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        if missing:
            print(f"{missing}: no results ({name} missing)")
        return None
    with open(path) as f:
        return json.load(f)


def verdict(ok):
    return "met" if ok else "MISSED"


def save(fig, name):
    for ext in ("svg", "png"):
        fig.savefig(os.path.join(RESULTS, f"{name}.{ext}"), dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"plot: {RESULTS}/{name}.svg and .png")


def openssl_speed():
    """Verifications per second from `openssl speed ecdsap256 ed25519`."""
    path = os.path.join(RESULTS, "openssl-speed.txt")
    if not os.path.exists(path):
        return []
    found = []
    with open(path) as f:
        for line in f:
            words = line.split()
            if "(nistp256)" in line and words:
                found.append(("OpenSSL raw ECDSA P-256 (openssl speed)", float(words[-1])))
            if "(Ed25519)" in line and words:
                found.append(("OpenSSL raw Ed25519 (openssl speed)", float(words[-1])))
    return found


def verification():
    ours = load("bench-verify.json", "approval verification")
    if not ours:
        return
    r = ours["per_second"]
    rows = [
        ("webauthn-rs 0.6 from the JSON body (Countersign gateway)", r["webauthn_rs_json"], "ours"),
        ("webauthn-rs 0.6 from the parsed structure", r["webauthn_rs"], "ours"),
    ]
    peer_names = {
        "py_webauthn": "py_webauthn (Duo, Python)",
        "python_fido2": "python-fido2 Fido2Server (Yubico, Python)",
        "simplewebauthn": "@simplewebauthn/server (Node)",
        "go_duo_labs_webauthn": "duo-labs/webauthn (Go)",
    }
    peers = []
    for f in ("bench-verify-python.json", "bench-verify-node.json", "bench-verify-go.json"):
        p = load(f, "a peer")
        if not p:
            continue
        for k, v in p["per_second"].items():
            version = p.get("versions", {}).get(k, "")
            peers.append((f"{peer_names.get(k, k)} {version}".strip(), v, "peer"))
    rows += sorted(peers, key=lambda x: -x[1])
    openssl = openssl_speed()
    rows += [(name, v, "raw") for name, v in openssl]
    rows += [
        ("p256 raw ECDSA P-256 (RustCrypto, webauthn-rs's)", r["p256_raw"], "raw"),
        ("ring raw ECDSA P-256 (the machine's limit)", r["ring_raw"], "raw"),
        ("ed25519-dalek raw Ed25519", r["ed25519_dalek_raw"], "raw"),
        ("ring raw Ed25519", r["ring_ed25519_raw"], "raw"),
    ]
    ring, ours_json = r["ring_raw"], r["webauthn_rs_json"]
    print("\n== Approval verification: ES256 assertions, one core ==")
    print(f"{'verifier':<62} {'per s':>9} {'vs ring':>8} {'vs ours':>8}")
    for name, v, _ in rows:
        print(f"{name:<62} {v:>9.0f} {v / ring:>8.0%} {v / ours_json:>7.2f}x")
    fastest_peer = max((v for _, v, k in rows if k == "peer"), default=0)
    print(f"goal: faster than every peer: {verdict(ours_json > fastest_peer)}"
          f" (ours {ours_json:.0f}/s, fastest peer {fastest_peer:.0f}/s)")
    print(f"goal: at least 70% of raw verification: {verdict(ours_json >= 0.7 * ring)} ({ours_json / ring:.0%})")

    fig, ax = plt.subplots(figsize=(8, 0.42 * len(rows) + 1))
    colours = {"ours": "#1f6feb", "peer": "#8c959f", "raw": "#2da44e"}
    names = [n for n, _, _ in rows][::-1]
    values = [v for _, v, _ in rows][::-1]
    ax.barh(names, values, color=[colours[k] for _, _, k in rows][::-1])
    ax.axvline(0.7 * ring, color="#cf222e", linestyle="--", linewidth=1)
    ax.text(0.7 * ring, len(rows) - 0.5, " goal: 70% of ring", color="#cf222e", fontsize=8, va="top")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_xlabel("verifications per second, one core (higher is better)")
    ax.set_title("Approval verification: the same 64 ES256 assertions")
    save(fig, "bench-verify")


def gateway():
    g = load("bench-gateway.json", "gateway")
    if not g:
        return
    table = {}
    details = {}
    for row in g["results"]:
        table.setdefault(row["measure"], {})[row["store"]] = (row["value"], row["unit"])
        details.setdefault(row["measure"], {})[row["store"]] = row.get("detail", {})
    measures = [m for m in table if " stored: " not in m]
    if measures:
        print("\n== Gateway: intake, push, approval round trip ==")
        print(f"{'measure':<48} " + " ".join(f"{s:>14}" for s in STORES))
        for m in measures:
            cells = []
            for s in STORES:
                if s in table[m]:
                    v, unit = table[m][s]
                    ratio = details[m][s].get("of_baseline")
                    cells.append(f"{v:>9.1f} {unit:<4}" + (f" ({ratio:.0%})" if ratio else ""))
                else:
                    cells.append(f"{'-':>14}")
            print(f"{m:<48} " + " ".join(f"{c:>14}" for c in cells))
        pushes = [m for m in table if m.startswith("push latency, ") and m.endswith(": p99")]
        goals = [
            ("intake at 1000 req/s offered: p99", 10.0, "p99 <= 10 ms at 1,000 req/s"),
            *[(m, 50.0, f"push p99 <= 50 ms, {m[len('push latency, '):-len(': p99')]}") for m in pushes],
            ("approval round trip (softkey): p99", 30.0, "round trip p99 <= 30 ms"),
        ]
        for m, limit, text in goals:
            for s in STORES:
                if m in table and s in table[m]:
                    v = table[m][s][0]
                    print(f"goal: {text} ({s}): {verdict(v <= limit)} ({v:.1f} ms)")
        for s in STORES:
            m = "intake, Ed25519-signed"
            if m in table and s in table[m]:
                ratio = details[m][s].get("of_baseline", 0)
                print(f"goal: intake >= 50% of the baseline ({s}): {verdict(ratio >= 0.5)} ({ratio:.0%})")
        latency_plot(table)
    scale(table)


def latency_plot(table):
    pushes = sorted(
        (m[: -len(": p99")] for m in table if m.startswith("push latency, ") and m.endswith(": p99")),
        key=lambda m: int(m.split()[2]),
    )
    bars = [
        ("intake at 100 req/s", "intake at 100 req/s offered", None),
        *[(m.replace("push latency", "push"), m, 50) for m in pushes],
        ("approval round trip", "approval round trip (softkey)", 30),
    ]
    bars = [b for b in bars if f"{b[1]}: p99" in table]
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.2
    for j, s in enumerate(STORES):
        for k, pct in enumerate(["p50", "p99"]):
            xs, ys = [], []
            for i, (_, m, _) in enumerate(bars):
                cell = table.get(f"{m}: {pct}", {}).get(s)
                if cell:
                    xs.append(i + (2 * j + k - 1.5) * width)
                    ys.append(cell[0])
            ax.bar(xs, ys, width, label=f"{s} {pct}", color=["#54aeff", "#0969da", "#ffb77c", "#bc4c00"][2 * j + k])
    for i, (_, _, goal) in enumerate(bars):
        if goal:
            ax.hlines(goal, i - 0.45, i + 0.45, colors="#cf222e", linestyles="--", linewidth=1)
            ax.text(i + 0.45, goal, f"goal {goal} ms", color="#cf222e", fontsize=7, ha="right", va="bottom")
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.set_ylabel("milliseconds (lower is better)")
    ax.set_title("Gateway latency, p50 and p99")
    ax.legend(fontsize=7, ncol=2)
    save(fig, "bench-latency")


def scale(table):
    sizes = sorted({int(m.split(" stored: ")[0]) for m in table if " stored: " in m})
    if not sizes:
        return
    what = [
        "list newest 50",
        "list pending 50",
        "list 50, halfway back",
        "read one",
        "approver inbox (first 200)",
        "intake, same key and account",
    ]
    print("\n== Scale: p99 in ms by stored operations (10% pending); memory in MB ==")
    for s in STORES:
        if not any(s in table.get(f"{n} stored: {w}: p99", {}) for n in sizes for w in what):
            continue
        print(f"{s}:")
        print(f"{'stored':>10} " + " ".join(f"{w[:18]:>18}" for w in what) + f" {'MB at rest':>11} {'MB after':>9}")
        for n in sizes:
            cells = [table.get(f"{n} stored: {w}: p99", {}).get(s, (math.nan,))[0] for w in what]
            rest = table.get(f"{n} stored: memory at rest", {}).get(s, (math.nan,))[0]
            after = table.get(f"{n} stored: memory after load", {}).get(s, (math.nan,))[0]
            print(f"{n:>10} " + " ".join(f"{c:>18.1f}" for c in cells) + f" {rest:>11.0f} {after:>9.0f}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, s in zip(axes, STORES):
        for w in what:
            ys = [table.get(f"{n} stored: {w}: p99", {}).get(s, (math.nan,))[0] for n in sizes]
            ax.plot(sizes, ys, marker="o", label=w)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(s)
        ax.set_xlabel("operations stored (10% pending)")
    axes[0].set_ylabel("p99 ms (lower is better)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Listing and reading as the store grows")
    save(fig, "bench-scale")


def desktop():
    d = load("bench-desktop.json", "desktop")
    if not d:
        return
    print("\n== Desktop under Xvfb: start, memory (app + its WebKit processes), binary ==")
    print(f"{'launch':<36} {'window ms':>10} {'PIN->inbox':>11} {'RSS MB':>8} {'PSS MB':>8}  inbox")
    for r in d["runs"]:
        inbox = r.get("login_to_inbox_ms")
        inbox = "-" if inbox is None else f"{inbox:.0f}"
        print(f"{r['launch']:<36} {r['window_ready_ms']:>10.0f} {inbox:>11}"
              f" {r['rss_mb']:>8.0f} {r['pss_mb']:>8.0f}  {r.get('inbox_title', '')}")
    first = d["runs"][0]
    print(f"goal: start <= 2 s: {verdict(first['window_ready_ms'] <= 2000)}"
          f" ({first['window_ready_ms'] / 1000:.2f} s, {first['launch']})")
    worst = max(d["runs"], key=lambda r: r["pss_mb"])
    print(f"goal: memory <= 250 MB: {verdict(worst['pss_mb'] <= 250)}"
          f" (largest PSS {worst['pss_mb']:.0f} MB, {worst['launch']}; RSS counts shared pages once per process)")
    if d.get("production_mb"):
        print(f"goal: binary <= 25 MB: {verdict(d['production_mb'] <= 25)} (production {d['production_mb']:.1f} MB;"
              f" demo build {d['demo_mb']:.1f} MB)")
    fig, ax = plt.subplots(figsize=(8, 3.4))
    labels = [r["launch"].replace(", ", "\n", 1) for r in d["runs"]]
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], [r["rss_mb"] for r in d["runs"]], 0.4,
           label="RSS (shared pages counted in each process)", color="#8c959f")
    ax.bar([x + 0.2 for x in xs], [r["pss_mb"] for r in d["runs"]], 0.4,
           label="PSS (shared pages split)", color="#1f6feb")
    ax.axhline(250, color="#cf222e", linestyle="--", linewidth=1)
    ax.text(len(labels) - 0.5, 250, "goal 250 MB", color="#cf222e", fontsize=8, ha="right", va="bottom")
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel("MB, app + WebKit processes")
    ax.set_title("Countersign Desktop memory, 5 s after the first screen or the inbox")
    ax.legend(fontsize=7)
    save(fig, "bench-desktop")


def build():
    b = load("bench-build.json")
    if not b:
        return
    print("\n== Build (dev profile, whole workspace) ==")
    print(f"first build this run {b['first_s']} s (cold only on a fresh target/); after touching the gateway"
          f" {b['after_gateway_edit_s']} s; after touching core {b['after_core_edit_s']} s; target/ {b['target_mb']} MB")


def main():
    verification()
    gateway()
    desktop()
    build()


if __name__ == "__main__":
    main()
