-- Keys, their change log and the one version counter (Portcullis schema 1).

-- The one counter row. Every change takes its next value in the same
-- transaction, holding the row's lock until it commits: commits happen in
-- version order, so a reader of "version > cursor" never skips a change.
CREATE TABLE portcullis_version (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version      bigint  NOT NULL DEFAULT 0,
    -- Revoked keys are removed (and the change log trimmed) up to this
    -- version; a mirror whose cursor is older must load everything again.
    pruned_below bigint  NOT NULL DEFAULT 0
);
INSERT INTO portcullis_version DEFAULT VALUES;

CREATE TABLE portcullis_keys (
    id                  text        PRIMARY KEY,
    digest              bytea       NOT NULL UNIQUE CHECK (length(digest) = 32),
    start               text        NOT NULL,
    user_id             text,
    tenant              text,
    tier                text        NOT NULL,
    label               text        NOT NULL,
    description         text        NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL,
    created_by          text        NOT NULL,
    expires_at          timestamptz,
    disabled            boolean     NOT NULL DEFAULT false,
    revoked_at          timestamptz,           -- deleted: refused, kept for limits and audit
    previous_digest     bytea CHECK (length(previous_digest) = 32),
    previous_expires_at timestamptz,           -- a refreshed key's old value works until then
    last_used_at        timestamptz,
    version             bigint      NOT NULL   -- of the key's last change
);
CREATE INDEX portcullis_keys_version ON portcullis_keys (version);
CREATE INDEX portcullis_keys_user ON portcullis_keys (user_id) WHERE revoked_at IS NULL;
CREATE INDEX portcullis_keys_tenant ON portcullis_keys (tenant) WHERE revoked_at IS NULL;

-- One row per change: who did what to which key (never a secret).
CREATE TABLE portcullis_changes (
    version bigint      NOT NULL,
    key_id  text        NOT NULL,
    op      text        NOT NULL,
    by      text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, key_id)
);

-- Checks per key and day, summed over every replica.
CREATE TABLE portcullis_usage (
    key_id  text   NOT NULL,
    day     date   NOT NULL,
    allowed bigint NOT NULL DEFAULT 0,
    denied  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);
