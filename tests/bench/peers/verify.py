"""Peers of the approval-verification benchmark in Python: Duo's py_webauthn and
Yubico's python-fido2 (Fido2Server) verify the same assertions the gateway's
verifier does (results/assertions.json, written by bench_verify), each from the
JSON body, with user verification required, on one core.

    python verify.py results/assertions.json [seconds] > results/bench-verify-python.json
"""
import json
import sys
import time

from fido2.cose import CoseKey
from fido2.server import Fido2Server
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import AttestedCredentialData, PublicKeyCredentialRpEntity, UserVerificationRequirement
from webauthn import verify_authentication_response


def rate(seconds, once):
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += once()
    return n / (time.perf_counter() - start)


def main():
    data = json.load(open(sys.argv[1]))
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    cose = websafe_decode(data["public_key_cose"])
    # The JSON bodies as a server receives them, and each one's challenge.
    cases = [(json.dumps(a["credential"]), websafe_decode(a["challenge"])) for a in data["assertions"]]

    def py_webauthn():
        for body, challenge in cases:
            verify_authentication_response(
                credential=body,
                expected_challenge=challenge,
                expected_rp_id=data["rp_id"],
                expected_origin=data["origin"],
                credential_public_key=cose,
                credential_current_sign_count=0,
                require_user_verification=True,
            )
        return len(cases)

    server = Fido2Server(PublicKeyCredentialRpEntity(id=data["rp_id"], name="Countersign"))
    stored = [
        AttestedCredentialData.create(
            b"\0" * 16, websafe_decode(data["credential_id"]), CoseKey.parse(__import__("cbor2").loads(cose))
        )
    ]
    states = [
        {"challenge": websafe_encode(challenge), "user_verification": UserVerificationRequirement.REQUIRED}
        for _, challenge in cases
    ]

    def fido2():
        for (body, _), state in zip(cases, states):
            server.authenticate_complete(state, stored, json.loads(body))
        return len(cases)

    # Each must accept every assertion before it is timed.
    py_webauthn()
    fido2()
    out = {
        "benchmark": "approval-verification-peers",
        "language": f"Python {sys.version.split()[0]}",
        "seconds_each": seconds,
        "per_second": {
            "py_webauthn": rate(seconds, py_webauthn),
            "python_fido2": rate(seconds, fido2),
        },
        "versions": {
            "py_webauthn": __import__("importlib.metadata").metadata.version("webauthn"),
            "python_fido2": __import__("importlib.metadata").metadata.version("fido2"),
            "cryptography": __import__("importlib.metadata").metadata.version("cryptography"),
        },
    }
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
