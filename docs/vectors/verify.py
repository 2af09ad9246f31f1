#!/usr/bin/env python3
"""Recompute every Countersign test vector from docs/protocol.md alone.

An independent implementation (Python standard library only) of the canonical
form, digest, fingerprint and approval binding. It shares no code with the Rust
crate, so agreement between the two is evidence that the document is enough to
build a compatible verifier. Exit status 0 when every vector matches.
"""
import base64
import hashlib
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


def jcs(value):
    # RFC 8785 for the values Countersign uses: objects with ASCII member names,
    # strings, booleans and integers below 2^53 (no floats ever appear). For these,
    # sorting by code point equals sorting by UTF-16 code unit, and Python's
    # escaping with ensure_ascii=False equals ECMAScript JSON.stringify.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest(canonical):
    return hashlib.sha256(b"countersign:op:v1\x00" + canonical).digest()


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def fingerprint(d):
    s = base64.b32encode(d[:10]).decode()
    return "-".join(s[i:i + 4] for i in range(0, 16, 4))


def main():
    failures = 0
    files = sorted(p for p in HERE.glob("*.json") if p.name != "decode-errors.json")
    for path in files:
        v = json.loads(path.read_text(encoding="utf-8"))
        canonical = jcs(v["operation"])
        d = digest(canonical)
        checks = {
            "canonical_hex": canonical.hex(),
            "canonical_utf8": canonical.decode("utf-8"),
            "digest_hex": d.hex(),
            "digest_base64url": b64url(d),
            "fingerprint": fingerprint(d),
            "binding_approve": {"v": 1, "op": v["operation"]["id"], "digest": b64url(d), "decision": "approve"},
        }
        bad = [k for k, want in checks.items() if v[k] != want]
        failures += bool(bad)
        print(f"{'FAIL' if bad else 'ok  '} {path.name}" + (f" ({', '.join(bad)})" if bad else ""))
    errors = json.loads((HERE / "decode-errors.json").read_text(encoding="utf-8"))
    print(f"ok   decode-errors.json lists {len(errors)} inputs that a decoder must refuse")
    print(f"{len(files) - failures} passed, {failures} failed")
    return 1 if failures or not files else 0


if __name__ == "__main__":
    sys.exit(main())
