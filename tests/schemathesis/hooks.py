"""schemathesis hooks: sign API-key requests as docs/api-signing.md says, and send
an approver's session with the session operations, so the generated requests get
past authentication and exercise the handlers behind it (validation, policy,
storage), not only the 401.

The key is an HMAC-SHA256 key the script creates on the gateway host
(`countersign-gateway api-key create --algorithm hmac`) and passes in CS_KEY_ID and
CS_KEY_SECRET. The session (CS_SESSION) belongs to an admin and approver the script
enrolls and logs in with a SOFTWARE key through the `countersign` CLI, as a person
would with a hardware key. Standard library only; written from the document, not
from the gateway's code.
"""

import base64
import hashlib
import hmac
import os
import secrets
import time

import requests
import schemathesis

KEY_ID = os.environ["CS_KEY_ID"]
SECRET = base64.urlsafe_b64decode(os.environ["CS_KEY_SECRET"] + "=" * (-len(os.environ["CS_KEY_SECRET"]) % 4))
# Operations that take a signed API-key request.
SIGNED = {("POST", "/v1/withdrawals"), ("GET", "/v1/operations"), ("GET", "/v1/operations/{id}")}
SESSION = os.environ.get("CS_SESSION", "")
# Operations that take an approver's session (Authorization: Bearer). The live event
# stream is left out: with a session it streams until the session ends, by design.
WITH_SESSION = {
    ("GET", "/v1/approver/operations"),
    ("POST", "/v1/operations/{id}/challenge"),
    ("POST", "/v1/operations/{id}/decisions"),
    ("POST", "/v1/freeze/challenge"),
    ("POST", "/v1/freeze"),
    ("POST", "/v1/admin/operations"),
    ("POST", "/v1/admin/enrollment-codes"),
    ("GET", "/v1/admin/approvers"),
    ("GET", "/v1/admin/api-keys"),
    ("POST", "/v1/admin/api-keys/{id}/revoke"),
    ("GET", "/v1/policy"),
    ("GET", "/v1/admin/audit"),
}


class SignedRequest(requests.auth.AuthBase):
    """Signs the request exactly as it goes on the wire (method, path, query, body)."""

    def __call__(self, r):
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        path, _, query = r.path_url.partition("?")
        timestamp = str(int(time.time()))
        nonce = secrets.token_urlsafe(24)
        idempotency = r.headers.get("Idempotency-Key", "")
        message = "\n".join([
            "countersign-request-v1", r.method, path, query, timestamp, nonce, idempotency,
            hashlib.sha256(body).hexdigest(),
        ]).encode("utf-8")
        signature = hmac.new(SECRET, message, hashlib.sha256).digest()
        r.headers["CS-Key"] = KEY_ID
        r.headers["CS-Timestamp"] = timestamp
        r.headers["CS-Nonce"] = nonce
        r.headers["CS-Signature"] = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
        return r


CS_HEADERS = ("CS-Key", "CS-Timestamp", "CS-Nonce", "CS-Signature")


@schemathesis.hook
def before_call(context, case, kwargs):
    """Sign where the generated case meant well-formed credentials: a case that
    leaves a CS-* header out, or makes the headers invalid on purpose, goes out as
    generated, so its refusal is what is checked."""
    operation = (case.method.upper(), case.operation.path)
    if operation in WITH_SESSION:
        with_session(case, kwargs)
        return
    if operation not in SIGNED:
        return
    present = {name.lower() for name in (case.headers or {})}
    if not all(h.lower() in present for h in CS_HEADERS):
        return
    meta = case.meta
    if meta is not None and meta.is_negative_at(meta_location("header")):
        return
    kwargs["auth"] = SignedRequest()


class BearerSession(requests.auth.AuthBase):
    """The approver's session, in place of whatever Authorization was generated."""

    def __call__(self, r):
        r.headers["Authorization"] = "Bearer " + SESSION
        return r


def with_session(case, kwargs):
    """The approver's session where the case meant a well-formed Authorization
    header; a case that leaves it out or breaks it on purpose goes out as generated."""
    if not SESSION:
        return
    if not any(name.lower() == "authorization" for name in (case.headers or {})):
        return
    meta = case.meta
    if meta is not None and meta.is_negative_at(meta_location("header")):
        return
    kwargs["auth"] = BearerSession()


def meta_location(name):
    from schemathesis.core.parameters import ParameterLocation

    return ParameterLocation(name)
