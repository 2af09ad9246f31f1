-- A destination is its address AND its memo / destination tag (XRP, XLM, EOS, ...):
-- an exchange's deposit address with another tag is another beneficiary. The
-- allowlist is keyed on both ('' when the network has no memo); entries stored
-- before this migration have no memo, so on networks that require one they match
-- nothing until they are added again with their memo (fail closed).
CREATE TABLE allowlist_v3 (
    account  TEXT NOT NULL,
    network  TEXT NOT NULL,
    address  TEXT NOT NULL,
    memo     TEXT NOT NULL DEFAULT '',
    label    TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (account, network, address, memo)
);
INSERT INTO allowlist_v3 (account, network, address, memo, label, added_at)
    SELECT account, network, address, '', label, added_at FROM allowlist;
DROP TABLE allowlist;
ALTER TABLE allowlist_v3 RENAME TO allowlist;

-- "First transfer to this destination" compares the memo too (NULL: none).
ALTER TABLE operations ADD COLUMN destination_memo TEXT;
