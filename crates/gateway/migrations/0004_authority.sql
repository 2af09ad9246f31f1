-- The authority chain (protocol §15): the genesis (a draft until every key it lists
-- has signed it) and the links after it. These rows are a cache of signed documents:
-- the gateway and the checker verify them from the pinned genesis hash, never trust them.
CREATE TABLE authority_genesis (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    document   TEXT NOT NULL,
    hash       TEXT NOT NULL,
    signatures TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sealed_at  BIGINT
);
CREATE TABLE authority_links (
    idx          BIGINT PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,
    operation_id TEXT NOT NULL UNIQUE,
    link         TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
