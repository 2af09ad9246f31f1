#!/usr/bin/env python3
"""Recompute every Countersign test vector from docs/protocol.md alone.

Checks each operation vector (canonical bytes, digest, fingerprint, binding), each
refused input in decode-errors.json (the envelope checks, steps 1-4), and, through
verify_authority.py, the authority chain of authority.json and a release verified
from its pinned genesis with real ES256 and Ed25519 signatures.

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


class Refused(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise Refused("canonical.duplicate_key")
        seen[key] = value
    return seen


def _finite(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise Refused("canonical.malformed_json")
    return value


def _no_constants(_name):
    raise Refused("canonical.malformed_json")


JSON_WS = " \t\n\r"


def strict_envelope(data):
    """Strict decoding (protocol.md) up to the schema: syntax, duplicates, trailing
    data, version, canonical bytes, and the one-spelling rules for nulls and sets.
    Returns the parsed object or raises Refused. The operation schema itself
    (field types, identifiers, amounts, text rules) is not reimplemented here."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("canonical.malformed_json")
    decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_float=_finite, parse_constant=_no_constants)
    start = len(text) - len(text.lstrip(JSON_WS))
    try:
        value, end = decoder.raw_decode(text, start)
    except json.JSONDecodeError:
        raise Refused("canonical.malformed_json")
    if text[end:].strip(JSON_WS):
        raise Refused("canonical.trailing_data")
    if not isinstance(value, dict):
        raise Refused("canonical.missing_version")
    v = value.get("v")
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise Refused("canonical.missing_version")
    if v != 1:
        raise Refused("canonical.unknown_version")
    if jcs(value) != data:
        raise Refused("canonical.not_canonical")
    if not _one_spelling(value):
        raise Refused("canonical.not_canonical")
    return value


SET_MEMBERS = {"roles", "groups", "scopes", "ip_allowlist"}


def _one_spelling(value):
    """The typed-level canonical rules: no null anywhere (optional members are
    absent), and set members are arrays sorted by UTF-8 bytes without duplicates."""
    if value is None:
        return False
    if isinstance(value, list):
        return all(_one_spelling(x) for x in value)
    if isinstance(value, dict):
        for key, member in value.items():
            if key in SET_MEMBERS and isinstance(member, list):
                encoded = [x.encode("utf-8") for x in member if isinstance(x, str)]
                if encoded != sorted(set(encoded)):
                    return False
            if not _one_spelling(member):
                return False
    return True


def main():
    failures = 0
    files = sorted(p for p in HERE.glob("*.json")
                   if p.name not in ("decode-errors.json", "certificate.json", "piv.json", "reason.json", "authority.json"))
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
    passed = len(files) - failures
    for v in files:
        canonical = bytes.fromhex(json.loads(v.read_text(encoding="utf-8"))["canonical_hex"])
        try:
            strict_envelope(canonical)
            passed += 1
        except Refused as e:
            failures += 1
            print(f"FAIL {v.name}: valid canonical bytes refused with {e.code}")
    # The PIV approval message: SHA-256(domain || 0x00 || digest || decision || challenge).
    piv = json.loads((HERE / "piv.json").read_text(encoding="utf-8"))
    for case in piv["cases"]:
        want = hashlib.sha256(
            piv["domain"].encode() + b"\0" + bytes.fromhex(case["digest_hex"])
            + case["decision"].encode() + bytes.fromhex(case["challenge_hex"])
        ).hexdigest()
        ok = want == case["message_hex"]
        passed += ok
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} piv.json: {case['decision']}")
    # A decision's reason, signed by its hash in a version 2 binding (protocol.md §6).
    reason = json.loads((HERE / "reason.json").read_text(encoding="utf-8"))
    for case in reason["cases"]:
        text = bytes.fromhex(case["reason_utf8_hex"])
        ok = b64url(hashlib.sha256(reason["domain"].encode() + b"\0" + text).digest()) == case["reason_hash"]
        passed += ok
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} reason.json: {text.decode('utf-8')!r}")
    eth = json.loads((HERE / reason["operation_vector"]).read_text(encoding="utf-8"))
    want = {"v": 2, "op": eth["operation"]["id"], "digest": eth["digest_base64url"], "decision": "reject",
            "reason": b64url(hashlib.sha256(reason["domain"].encode() + b"\0" + reason["reason"].encode()).digest())}
    ok = reason["binding_reject_with_reason"] == want
    passed += ok
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} reason.json: version 2 binding with its reason")
    # Each published bad input: steps 1-4 must give its error, or, for errors of
    # step 5 (schema and policy), must let it through to the schema check.
    errors = json.loads((HERE / "decode-errors.json").read_text(encoding="utf-8"))
    schema_errors = {"canonical.invalid_operation", "policy.invalid"}
    for case in errors:
        want = case["error"]
        try:
            strict_envelope(bytes.fromhex(case["input_hex"]))
            got = "schema"
        except Refused as e:
            got = e.code
        ok = got == want or (got == "schema" and want in schema_errors)
        passed += ok
        failures += not ok
        if not ok:
            print(f"FAIL decode-errors.json {case['name']!r}: expected {want}, got {got}")
    print(f"ok   decode-errors.json: {len(errors)} inputs a decoder must refuse")
    print(f"{passed} passed, {failures} failed")
    # The authority chain and a release verified from the pinned genesis (§15):
    # ES256 and Ed25519 in verify_authority.py, standard library only.
    import verify_authority
    chain_failed = verify_authority.main()
    return 1 if failures or chain_failed or not files else 0


if __name__ == "__main__":
    sys.exit(main())
