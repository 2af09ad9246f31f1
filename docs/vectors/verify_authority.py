#!/usr/bin/env python3
"""Verify docs/vectors/authority.json from docs/protocol.md §6, §8, §10, §13 and §15
alone: the genesis against its pinned hash and every key's signature, each link
against the admin quorum before it, and the release under the head it names —
ES256 (P-256 ECDSA) and Ed25519 implemented here with the standard library only,
sharing no code with the Rust crate. Then each input the vector says a verifier
must refuse is refused with its code. Exit status 0 when all of it holds.
"""
import base64
import copy
import hashlib
import json
import pathlib
import sys
from datetime import datetime, timezone
from decimal import Decimal

import verify as v  # jcs, digest, b64url, strict_envelope, Refused

HERE = pathlib.Path(__file__).resolve().parent
Refused = v.Refused


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# ---- P-256 ECDSA (FIPS 186-4), affine arithmetic -------------------------------------
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
     0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def _add(p1, p2):
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % P == 0:
        return None
    if p1 == p2:
        lam = (3 * x1 * x1 - 3) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return x3, (lam * (x1 - x3) - y1) % P


def scalar_mul(k, point, add, zero):
    """k * point by double-and-add, for either curve's addition."""
    acc = zero
    while k:
        if k & 1:
            acc = add(acc, point)
        point = add(point, point)
        k >>= 1
    return acc


def _mul(k, point):
    return scalar_mul(k, point, _add, None)


def _der_ints(sig):
    if len(sig) < 8 or sig[0] != 0x30 or sig[1] != len(sig) - 2:
        raise ValueError("not DER")
    out, i = [], 2
    for _ in range(2):
        if sig[i] != 0x02:
            raise ValueError("not DER")
        n = sig[i + 1]
        out.append(int.from_bytes(sig[i + 2:i + 2 + n], "big"))
        i += 2 + n
    if i != len(sig):
        raise ValueError("trailing bytes")
    return out


def es256_verify(sec1, message, der):
    if len(sec1) != 65 or sec1[0] != 4:
        return False
    q = (int.from_bytes(sec1[1:33], "big"), int.from_bytes(sec1[33:], "big"))
    if (q[1] * q[1] - (q[0] ** 3 - 3 * q[0] + B)) % P:
        return False
    try:
        r, s = _der_ints(der)
    except (ValueError, IndexError):
        return False
    if not (0 < r < N and 0 < s < N):
        return False
    e = int.from_bytes(hashlib.sha256(message).digest(), "big")
    w = pow(s, -1, N)
    x = _add(_mul(e * w % N, G), _mul(r * w % N, q))
    return x is not None and x[0] % N == r


# ---- Ed25519 (RFC 8032 §5.1.7), extended coordinates -----------------------------------
EP = 2 ** 255 - 19
EL = 2 ** 252 + 27742317777372353535851937790883648493
ED = -121665 * pow(121666, -1, EP) % EP
SQRT_M1 = pow(2, (EP - 1) // 4, EP)


def _ed_add(a, b):
    aa = (a[1] - a[0]) * (b[1] - b[0]) % EP
    bb = (a[1] + a[0]) * (b[1] + b[0]) % EP
    cc = 2 * a[3] * b[3] * ED % EP
    dd = 2 * a[2] * b[2] % EP
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return e * f % EP, g * h % EP, f * g % EP, e * h % EP


def _ed_mul(k, point):
    return scalar_mul(k, point, _ed_add, (0, 1, 1, 0))


def _ed_decode(s):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= EP:
        return None
    x2 = (y * y - 1) * pow(ED * y * y + 1, -1, EP) % EP
    x = pow(x2, (EP + 3) // 8, EP)
    if (x * x - x2) % EP:
        x = x * SQRT_M1 % EP
    if (x * x - x2) % EP or (x == 0 and sign):
        return None
    if x & 1 != sign:
        x = EP - x
    return x, y, 1, x * y % EP


_GY = 4 * pow(5, -1, EP) % EP
EG = _ed_decode(_GY.to_bytes(32, "little"))


def ed25519_verify(public, message, signature):
    a, r = _ed_decode(public), _ed_decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or len(signature) != 64 or s >= EL:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % EL
    left, right = _ed_mul(s, EG), _ed_add(r, _ed_mul(h, a))
    return (left[0] * right[2] - right[0] * left[2]) % EP == 0 and (left[1] * right[2] - right[1] * left[2]) % EP == 0


# ---- assertions, quorum, policy floor ------------------------------------------------
def domain_hash(domain, value):
    return hashlib.sha256(domain + b"\0" + v.jcs(value)).digest()


def reason_hash(text):
    return v.b64url(hashlib.sha256(b"countersign:reason:v1\0" + text.encode()).digest())


def check_assertion(a, key, rp, binding_ok, code):
    """§13 steps 2-4 for one assertion with `key` ({"public_key", "algorithm"})."""
    auth, cdj, sig = unb64(a["authenticator_data"]), unb64(a["client_data_json"]), unb64(a["signature"])
    if len(auth) < 37 or auth[:32] != hashlib.sha256(rp["id"].encode()).digest():
        raise Refused(code("wrong_rp"))
    if auth[32] & 0x05 != 0x05:
        raise Refused(code("user_not_verified"))
    client = json.loads(cdj)
    if client.get("type") != "webauthn.get" or client.get("origin") not in rp["origins"]:
        raise Refused(code("client_data"))
    if not binding_ok(client.get("countersign")):
        raise Refused(code("binding"))
    if key["algorithm"] != "es256" or not es256_verify(unb64(key["public_key"]), auth + hashlib.sha256(cdj).digest(), sig):
        raise Refused(code("bad_signature"))


def binds(op_id, d, m):
    """The countersign member approves exactly this document (version 1 or 2)."""
    return (isinstance(m, dict) and m.get("op") == op_id and m.get("digest") == v.b64url(d)
            and m.get("decision") == "approve"
            and ((m.get("v") == 1 and "reason" not in m) or (m.get("v") == 2 and isinstance(m.get("reason"), str))))


def approved(quorum, roster, approvers):
    """§8 places by Kuhn's matching: every place of every group filled."""
    places = [g["group"] for g in quorum["groups"] for _ in range(g["min"])]
    if not places:
        return False
    holder = [None] * len(places)

    def seat(person, seen):
        for i, group in enumerate(places):
            if group in roster[person] and i not in seen:
                seen.add(i)
                if holder[i] is None or seat(holder[i], seen):
                    holder[i] = person
                    return True
        return False

    for person in sorted(approvers):
        seat(person, set())
    return all(h is not None for h in holder)


def floor(policy, op):
    """The least quorum the policy demands from amount and kind alone (§13)."""
    groups, veto = {}, 2 ** 32 - 1
    kind, d = op["action"]["kind"], op["action"]["details"]
    tiers = [] if kind != "withdrawal" else [
        t["quorum"] for t in policy["withdrawal_tiers"]
        if ("min_reference_value" in t and Decimal(d["reference_value"]["amount"]) >= Decimal(t["min_reference_value"]))
        or (d["asset"] in t.get("min_asset_amount", {}) and Decimal(d["amount"]) >= Decimal(t["min_asset_amount"][d["asset"]]))
    ]
    for q in tiers if kind == "withdrawal" else [policy["admin_quorum"]]:
        for g in q["groups"]:
            groups[g["group"]] = max(groups.get(g["group"], 0), g["min"])
        veto = min(veto, q["rejections_to_veto"])
    return groups, veto


def strict_enough(carried, fl):
    mins = {g["group"]: g["min"] for g in carried["groups"]}
    return all(mins.get(g, 0) >= m for g, m in fl[0].items()) and carried["rejections_to_veto"] <= fl[1]


def responsible(op):
    i = op["initiator"]
    return i["owner"] if i["type"] == "api_key" else i["approver"]


def subject(op):
    return op["action"]["details"].get("approver") if op["action"]["kind"] in ("approver_enroll", "approver_revoke") else None


def counted(approvals, state, op, d, role, prefix, rename):
    """§13 per approval and across them (the people of `state`, deciding `role`):
    the distinct approvers. A revocation's proposer may approve it (one admin
    suffices); nobody approves what is about them."""
    code = lambda c: f"{prefix}.{rename.get(c, c)}"
    seen = set()
    for a in approvals:
        person = state["people"].get(a["approver"])
        key = next((k for k in (person or {}).get("keys", []) if k["credential_id"] == a["credential_id"]), None)
        if key is None:
            raise Refused(code("unknown_credential"))
        if role not in person["roles"]:
            raise Refused(code("not_an_approver"))
        check_assertion(a, key, state["rp"], lambda m: binds(op["id"], d, m), code)
        proposer = a["approver"] == responsible(op) and op["action"]["kind"] != "approver_revoke"
        if proposer or a["approver"] == subject(op):
            raise Refused(code("initiator_approved"))
        if a["approver"] in seen:
            raise Refused(code("duplicate_approver"))
        seen.add(a["approver"])
    return seen


def decode_operation(text, code):
    try:
        v.strict_envelope(text.encode())
    except Refused:
        raise Refused(code)
    return json.loads(text), v.digest(text.encode())


# ---- the chain ------------------------------------------------------------------------
def genesis_state(pinned, signed):
    g = signed["genesis"]
    h = domain_hash(b"countersign:genesis:v1", g)
    if h.hex() != pinned:
        raise Refused("authority.genesis_mismatch")
    keys = {(p["id"], k["credential_id"]): k for p in g["people"] for k in p["keys"]}
    marks = [m for k in keys.values() for m in ("id:" + k["credential_id"], "pk:" + k["public_key"])]
    if len(set(marks)) != len(marks) or any(len(unb64(k["public_key"])) != 65 for k in keys.values()):
        raise Refused("authority.genesis_invalid")
    if not any("admin" in p["roles"] for p in g["people"]):
        raise Refused("authority.genesis_invalid")
    seen = set()
    for s in signed["signatures"]:
        key = keys.get((s["approver"], s["credential_id"]))
        if key is None or s["credential_id"] in seen:
            raise Refused("authority.genesis_signature")
        member = {"v": 2, "op": "genesis", "digest": v.b64url(h), "decision": "approve", "reason": reason_hash("")}
        check_assertion(s, key, g["rp"], lambda m: m == member, lambda _c: "authority.genesis_signature")
        seen.add(s["credential_id"])
    if set(k for _, k in keys) - seen:
        raise Refused("authority.genesis_unsigned")
    return {"index": 0, "hash": h.hex(), "rp": g["rp"], "people": {p["id"]: copy.deepcopy(p) for p in g["people"]},
            "policies": {g["policy"]["version"]: g["policy"]}, "policy": g["policy"],
            "api_keys": {k["key_id"]: k for k in g["api_keys"]}, "applied_at": g["created_at"],
            "allowlist": list(g["allowlist"]), "keys_ever": set(marks), "applied": set(), "revoked": set()}


def apply_link(state, link):
    if link["index"] != state["index"] + 1:
        raise Refused("authority.link_index")
    if link["prev"] != state["hash"]:
        raise Refused("authority.broken_link")
    op, d = decode_operation(link["operation"], "authority.bad_operation")
    if op["action"]["kind"] == "withdrawal":
        raise Refused("authority.bad_operation")
    if op["id"] in state["applied"]:
        raise Refused("authority.replayed")
    if not (state["applied_at"] <= link["applied_at"] < op["expires_at"]):
        raise Refused("authority.bad_change")
    seen = counted(link["approvals"], state, op, d, "admin", "authority", {"not_an_approver": "not_an_admin"})
    roster = {p["id"]: set(p["groups"]) for p in state["people"].values() if "admin" in p["roles"] and p["keys"]}
    if op["action"]["kind"] == "approver_revoke":
        ok = bool(seen)
    else:
        ok = approved(state["policy"]["admin_quorum"], roster, seen & set(roster))
    if not ok:
        raise Refused("authority.quorum_not_met")
    details = op["action"]["details"]
    # A further key for someone who holds keys needs their own approval with one of them.
    holder = state["people"].get(details["approver"]) if op["action"]["kind"] == "approver_enroll" else None
    consent = link.get("consent")
    if holder and holder["keys"]:
        key = next((k for k in holder["keys"] if consent and k["credential_id"] == consent["credential_id"]), None)
        if key is None or consent["approver"] != holder["id"]:
            raise Refused("authority.consent_missing")
        check_assertion(consent, key, state["rp"], lambda m: binds(op["id"], d, m), lambda c: f"authority.{c}")
    elif consent is not None:
        raise Refused("authority.bad_change")
    nxt = copy.deepcopy(state)
    if link.get("public_key") is not None and op["action"]["kind"] != "approver_enroll":
        raise Refused("authority.bad_change")
    if op["action"]["kind"] == "approver_enroll":
        pk = link.get("public_key") or ""
        new_marks = {"id:" + details["credential"]["credential_id"], "pk:" + pk}
        if (hashlib.sha256(unb64(pk)).hexdigest() != details["credential"]["public_key_sha256"]
                or len(unb64(pk)) != 65 or new_marks & nxt["keys_ever"] or details["approver"] in nxt["revoked"]):
            raise Refused("authority.bad_change")
        nxt["keys_ever"] |= new_marks
        person = nxt["people"].setdefault(details["approver"], {"id": details["approver"], "keys": []})
        person.update(display_name=details["display_name"], roles=details["roles"], groups=details["groups"])
        person["keys"].append({"credential_id": details["credential"]["credential_id"], "algorithm": "es256", "public_key": pk})
    elif op["action"]["kind"] == "approver_revoke":
        if details.get("credential_id"):
            p = nxt["people"][details["approver"]]
            p["keys"] = [k for k in p["keys"] if k["credential_id"] != details["credential_id"]]
        else:
            if details["approver"] not in nxt["people"]:
                raise Refused("authority.bad_change")
            del nxt["people"][details["approver"]]
            nxt["revoked"].add(details["approver"])
    elif op["action"]["kind"] == "allowlist_add":
        same = [e for e in nxt["allowlist"] if (e["account"], e["network"], e["destination"]) == (details["account"], details["network"], details["destination"])]
        if not same:
            nxt["allowlist"].append({**details, "added_at": link["applied_at"]})
    elif op["action"]["kind"] == "policy_update":
        if details["policy"]["version"] != state["policy"]["version"] + 1:
            raise Refused("authority.bad_change")
        nxt["policy"] = details["policy"]
        nxt["policies"][details["policy"]["version"]] = details["policy"]
    elif op["action"]["kind"] == "api_key_create":
        if details["owner"] not in nxt["people"] or details["key_id"] in nxt["api_keys"]:
            raise Refused("authority.bad_change")
        nxt["api_keys"][details["key_id"]] = {"key_id": details["key_id"], "owner": details["owner"], "scopes": details["scopes"]}
    nxt["applied"].add(op["id"])
    nxt.update(index=link["index"], hash=domain_hash(b"countersign:link:v1", link).hex(), applied_at=link["applied_at"])
    return nxt


def chain(pinned, doc):
    states = [genesis_state(pinned, doc["genesis"])]
    for link in doc["links"]:
        states.append(apply_link(states[-1], link))
    return states


def verify_release(raw, gateway_key, states):
    doc = json.loads(raw)
    if doc["gateway_key"] != gateway_key:
        raise Refused("release.wrong_key")
    unsigned = {k: val for k, val in doc.items() if k != "signature"}
    if not ed25519_verify(unb64(gateway_key), b"countersign:release:v1\0" + v.jcs(unsigned), unb64(doc["signature"])):
        raise Refused("release.bad_signature")
    op, d = decode_operation(doc["operation"], "release.bad_operation")
    if d.hex() != doc["digest"]:
        raise Refused("release.digest_mismatch")
    head = doc.get("authority")
    if head is None:
        raise Refused("authority.missing")
    at = next((s for s in states if s["index"] == head["index"] and s["hash"] == head["hash"]), None)
    if at is None:
        raise Refused("authority.unknown_head")
    policy = at["policies"].get(op["policy_version"])
    if policy is None:
        raise Refused("authority.unknown_policy")
    quorum, latest = doc.get("quorum"), states[-1]
    if doc["basis"] != "quorum" or not quorum or not doc["approvals"]:
        raise Refused("release.basis_mismatch")  # this verifier checks quorum releases only
    if not strict_enough(quorum, floor(policy, op)):
        raise Refused("certificate.quorum_too_weak")
    role = "approver" if op["action"]["kind"] == "withdrawal" else "admin"
    seen = counted(doc["approvals"], at, op, d, role, "certificate", {})
    roster = {p["id"]: set(p["groups"]) for p in at["people"].values() if role in p["roles"] and p["keys"]}
    if doc["released_at"] >= op["expires_at"] or not approved(quorum, roster, seen & set(roster)):
        raise Refused("certificate.quorum_not_met")
    i = op["initiator"]
    grant = at["api_keys"].get(i.get("key_id"), {})
    if i["type"] == "api_key" and (grant.get("owner") != i["owner"] or "withdraw" not in grant.get("scopes", [])):
        raise Refused("authority.unknown_api_key")
    fl = merge(floor(latest["policy"], op), destination_floor(at, policy, op), destination_floor(latest, latest["policy"], op))
    if not strict_enough(quorum, fl):
        raise Refused("authority.floor_raised")
    for a in doc["approvals"]:
        held = latest["people"].get(a["approver"], {}).get("keys", [])
        if not any(k["credential_id"] == a["credential_id"] for k in held):
            raise Refused("authority.revoked_since")
    now_roster = {p["id"]: set(p["groups"]) for p in latest["people"].values() if role in p["roles"] and p["keys"]}
    if not approved(quorum, now_roster, seen & set(now_roster)):
        raise Refused("authority.roles_changed")
    return op, sorted(seen)


def merge(*floors):
    groups, veto = {}, 2 ** 32 - 1
    for g, v in floors:
        for name, m in g.items():
            groups[name] = max(groups.get(name, 0), m)
        veto = min(veto, v)
    return groups, veto


def destination_floor(state, policy, op):
    """Deny rules refuse; an enforced allowlist adds the withdrawal quorum for a
    destination not listed (or cooling off) when the operation was made, or refuses."""
    d, kind = op["action"]["details"], op["action"]["kind"]
    for rule in policy["deny"]:
        dest = d.get("destination", {}).get("address")
        ok = (rule.get("kind") in (None, kind) and rule.get("asset") in (None, d.get("asset"))
              and rule.get("network") in (None, d.get("network")) and rule.get("account") in (None, d.get("account"))
              and rule.get("api_key") in (None, op["initiator"].get("key_id"))
              and (rule.get("destination") is None or (dest is not None and dest.lower() == rule["destination"].lower()))
              and (rule.get("min_reference_value") is None or (kind == "withdrawal" and Decimal(d["reference_value"]["amount"]) >= Decimal(rule["min_reference_value"]))))
        if ok:
            raise Refused("authority.denied")
    if kind != "withdrawal" or not policy["allowlist"]["enforced"]:
        return {}, 2 ** 32 - 1
    created = parse_time(op["created_at"])
    usable = any((e["account"], e["network"], e["destination"]) == (d["account"], d["network"], d["destination"])
                 and created >= parse_time(e["added_at"]) + policy["allowlist"]["cool_off_seconds"]
                 for e in state["allowlist"])
    if usable:
        return {}, 2 ** 32 - 1
    if policy["allowlist"]["on_breach"] == "deny":
        raise Refused("authority.denied")
    q = policy["withdrawal_quorum"]
    return {g["group"]: g["min"] for g in q["groups"]}, q["rejections_to_veto"]


def parse_time(text):
    """Seconds since the epoch of a protocol timestamp (§2.3, UTC, `Z`)."""
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def main():
    vec = json.loads((HERE / "authority.json").read_text(encoding="utf-8"))
    passed = failures = 0

    def report(ok, what):
        nonlocal passed, failures
        passed, failures = passed + ok, failures + (not ok)
        print(f"{'ok  ' if ok else 'FAIL'} authority.json: {what}")

    try:
        states = chain(vec["pinned_genesis"], vec["authority"])
        report(states[-1]["index"] == vec["expected"]["head"]["index"]
               and states[-1]["hash"] == vec["expected"]["head"]["hash"], "the chain verifies from the pinned genesis to its head")
        op, approvers = verify_release(json.dumps(vec["release"]), vec["gateway_key"], states)
        report(op["id"] == vec["expected"]["operation_id"] and approvers == vec["expected"]["approvers"],
               "the release verifies under that head")
    except Refused as e:
        report(False, f"refused with {e.code}")
        return 1
    for case in vec["refused"]:
        try:
            if "link" in case:
                apply_link(states[0], case["link"])
            elif "genesis" in case:
                genesis_state(vec["pinned_genesis"], case["genesis"])
            else:
                verify_release(json.dumps(case["release"]), vec["gateway_key"], states)
            got = "accepted"
        except Refused as e:
            got = e.code
        report(got == case["code"], f"{case['name']}: {got}")
    print(f"{passed} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
