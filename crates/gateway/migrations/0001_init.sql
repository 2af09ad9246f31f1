-- Countersign gateway schema, version 1. The same DDL runs on SQLite and PostgreSQL:
-- integers are BIGINT, times are Unix seconds, amounts are canonical decimal TEXT,
-- structured values are JSON TEXT.

CREATE TABLE api_keys (
    id                  TEXT PRIMARY KEY,
    owner               TEXT NOT NULL,
    label               TEXT NOT NULL,
    algorithm           TEXT NOT NULL,            -- ed25519 | hmac_sha256
    public_key          TEXT,                     -- ed25519: base64url of 32 bytes
    hmac_salt           TEXT,                     -- hmac: hex; the secret itself is derived, never stored
    scopes              TEXT NOT NULL,            -- JSON array
    ip_allowlist        TEXT NOT NULL,            -- JSON array of CIDR blocks
    max_reference_value TEXT,                     -- per-request cap in the reference currency
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT,
    revoked_at          BIGINT,
    last_used_at        BIGINT,
    last_used_ip        TEXT
);

-- Nonces seen per key, kept until the signature window has passed: replays are refused
-- across requests, restarts and gateway instances.
CREATE TABLE nonces (
    key_id     TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX nonces_expiry ON nonces (expires_at);

-- The break-glass freeze of every API key: one row.
CREATE TABLE key_freeze (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    frozen     BIGINT NOT NULL,
    changed_at BIGINT NOT NULL,
    changed_by TEXT NOT NULL,
    reason     TEXT NOT NULL
);
INSERT INTO key_freeze (id, frozen, changed_at, changed_by, reason) VALUES (1, 0, 0, 'schema', 'initial');

CREATE TABLE policies (
    version      BIGINT PRIMARY KEY,
    document     TEXT NOT NULL,                   -- JSON
    activated_at BIGINT NOT NULL
);

CREATE TABLE operations (
    id              TEXT PRIMARY KEY,
    state           TEXT NOT NULL,                -- denied | pending | approved | released | rejected | expired | cancelled
    kind            TEXT NOT NULL,
    canonical       TEXT NOT NULL,                -- RFC 8785 bytes, decoded strictly on read
    digest          TEXT NOT NULL,                -- hex
    api_key_id      TEXT,
    account         TEXT,
    network         TEXT,
    destination     TEXT,
    reference_value TEXT,
    source_ip       TEXT,
    idempotency_key TEXT,
    request_hash    TEXT,
    verdict         TEXT NOT NULL,                -- JSON
    risk            TEXT,                         -- JSON
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (api_key_id, idempotency_key)
);
CREATE INDEX operations_state_created ON operations (state, created_at, id);
CREATE INDEX operations_created ON operations (created_at, id);
CREATE INDEX operations_key_created ON operations (api_key_id, created_at);
CREATE INDEX operations_account_created ON operations (account, created_at);
CREATE INDEX operations_destination ON operations (account, network, destination);

CREATE TABLE allowlist (
    account  TEXT NOT NULL,
    network  TEXT NOT NULL,
    address  TEXT NOT NULL,
    label    TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (account, network, address)
);

-- The built-in settlement sink: one row per released operation, ever. With a webhook
-- configured it is also the outbox: delivered_at is set once settlement answered 2xx.
CREATE TABLE settlement_ledger (
    operation_id    TEXT PRIMARY KEY REFERENCES operations (id),
    released_at     BIGINT NOT NULL,
    certificate     TEXT NOT NULL,                -- JSON release document
    delivered_at    BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX settlement_undelivered ON settlement_ledger (delivered_at, next_attempt_at);

-- The audit chain. audit_head is locked (FOR UPDATE on PostgreSQL) by every append,
-- which serialises appends across gateway instances.
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_log (
    seq   BIGINT PRIMARY KEY,
    entry TEXT NOT NULL,                          -- JSON of the entry (without its hash)
    hash  TEXT NOT NULL
);

CREATE TABLE audit_checkpoints (
    seq      BIGINT PRIMARY KEY,
    document TEXT NOT NULL                        -- JSON of the signed checkpoint
);
