-- Token page sessions (Portcullis schema 2): the one-time codes a platform
-- backend asks for, and the sessions the page trades them for. Only the
-- SHA-256 digests of codes, session cookies and CSRF tokens are stored.

CREATE TABLE portcullis_session_codes (
    digest     bytea       PRIMARY KEY CHECK (length(digest) = 32),
    user_id    text        NOT NULL,
    tenant     text,
    created_by text        NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz            -- good once
);

CREATE TABLE portcullis_sessions (
    digest      bytea       PRIMARY KEY CHECK (length(digest) = 32),
    csrf_digest bytea       NOT NULL CHECK (length(csrf_digest) = 32),
    user_id     text        NOT NULL,
    tenant      text,
    created_by  text        NOT NULL,  -- the management token that opened it
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX portcullis_sessions_expiry ON portcullis_sessions (expires_at);
