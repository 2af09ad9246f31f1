-- Approvers (people), their hardware keys, enrollment codes, sessions, pending
-- ceremonies and counted decisions.

CREATE TABLE approvers (
    id           TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    roles        TEXT NOT NULL,                   -- JSON array
    group_names  TEXT NOT NULL,                   -- JSON array
    user_handle  TEXT NOT NULL,                   -- WebAuthn user id (UUID)
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

CREATE TABLE credentials (
    id           TEXT PRIMARY KEY,                -- credential id, base64url
    approver_id  TEXT NOT NULL REFERENCES approvers (id),
    label        TEXT NOT NULL,
    aaguid       TEXT,
    public_key   TEXT NOT NULL,                   -- SEC1 uncompressed P-256 point, base64url
    passkey      TEXT NOT NULL,                   -- webauthn-rs AttestedPasskey, JSON
    counter      BIGINT NOT NULL,
    status       TEXT NOT NULL,                   -- active | pending_approval | revoked | flagged
    created_at   BIGINT NOT NULL
);
CREATE INDEX credentials_approver ON credentials (approver_id);

CREATE TABLE enrollment_codes (
    code_hash   TEXT PRIMARY KEY,                 -- SHA-256 of the code, hex: the code itself is never stored
    approver_id TEXT NOT NULL REFERENCES approvers (id),
    bootstrap   BIGINT NOT NULL,                  -- 1: the credential is active at once (host bootstrap)
    issued_by   TEXT NOT NULL,                    -- 'host', or the admin proposing the enrollment
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE sessions (
    token_hash    TEXT PRIMARY KEY,               -- SHA-256 of the token, hex
    approver_id   TEXT NOT NULL REFERENCES approvers (id),
    credential_id TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);

-- Server-held WebAuthn state, single use: deleted when consumed.
CREATE TABLE ceremonies (
    id           TEXT PRIMARY KEY,
    purpose      TEXT NOT NULL,                   -- enroll | login | decision
    approver_id  TEXT NOT NULL,
    operation_id TEXT,
    digest       TEXT,
    decision     TEXT,
    code_hash    TEXT,
    state        TEXT NOT NULL,                   -- webauthn-rs state, JSON
    expires_at   BIGINT NOT NULL
);

CREATE TABLE decisions (
    operation_id       TEXT NOT NULL REFERENCES operations (id),
    approver_id        TEXT NOT NULL,
    credential_id      TEXT NOT NULL,
    decision           TEXT NOT NULL,             -- approve | reject
    reason             TEXT,
    authenticator_data TEXT NOT NULL,             -- base64url, as signed
    client_data_json   TEXT NOT NULL,             -- base64url, as signed
    signature          TEXT NOT NULL,             -- base64url
    counter            BIGINT NOT NULL,
    decided_at         BIGINT NOT NULL,
    PRIMARY KEY (operation_id, approver_id)
);
