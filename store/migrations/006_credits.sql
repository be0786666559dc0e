-- Credits (Portcullis schema 6): a wallet per tenant (an organization, or a
-- user's personal context), the units replicas hold of it, idempotent
-- grants, and usage per day, tenant, user and key. Grants, refills and
-- changes of a wallet are changes of the feed (a version each); a take or
-- a settlement by a replica is not: no other replica needs to know.

CREATE TABLE portcullis_wallets (
    tenant         text        PRIMARY KEY,
    balance        bigint      NOT NULL DEFAULT 0,  -- what can still be taken: granted and refilled, less charged and held
    refill_amount  bigint      CHECK (refill_amount BETWEEN 1 AND 1000000000000),
    refill_every   text        CHECK (refill_every IN ('day', 'month')),
    refill_day     int         CHECK (refill_day BETWEEN 1 AND 28),
    next_refill_at timestamptz,
    spent_day      date,
    spent_today    bigint      NOT NULL DEFAULT 0,
    forfeited      bigint      NOT NULL DEFAULT 0,  -- units of holds charged after their lease, all time
    created_at     timestamptz NOT NULL,
    created_by     text        NOT NULL,
    deleted_at     timestamptz,
    version        bigint      NOT NULL,
    created_version bigint     NOT NULL,            -- the version that created it: a wallet deleted and made again is another
    CHECK ((refill_amount IS NULL) = (refill_every IS NULL)),
    CHECK (refill_day IS NULL OR refill_every = 'month')
);
CREATE INDEX portcullis_wallets_version ON portcullis_wallets (version);
CREATE INDEX portcullis_wallets_refill ON portcullis_wallets (next_refill_at) WHERE deleted_at IS NULL;

-- The units a replica took and has not yet reported spent or returned. The
-- balance no longer counts them, so whatever a replica does with its hold
-- the wallet is never overspent. A hold its replica stopped renewing is
-- dropped after the lease and its units counted forfeited (the replica may
-- have admitted all of them); a replica that comes back later still
-- reports what it spent and returns the rest to the balance.
CREATE TABLE portcullis_wallet_holds (
    tenant     text        NOT NULL,
    replica    text        NOT NULL,
    units      bigint      NOT NULL CHECK (units >= 0),
    renewed_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, replica)
);
CREATE INDEX portcullis_wallet_holds_renewed ON portcullis_wallet_holds (renewed_at);

-- The last settlement each replica had applied: a settlement is applied
-- once, so one retried after a lost answer is not counted twice.
CREATE TABLE portcullis_wallet_replicas (
    replica text        PRIMARY KEY,
    settled bigint      NOT NULL,
    at      timestamptz NOT NULL
);

-- Grants by idempotency key: a retried grant answers as the first did. A
-- wallet deleted and made again is another, with keys of its own.
CREATE TABLE portcullis_wallet_grants (
    tenant          text        NOT NULL,
    since           bigint      NOT NULL,           -- the wallet's created_version: keys are scoped to the wallet
    idempotency_key text        NOT NULL,
    units           bigint      NOT NULL,
    note            text        NOT NULL DEFAULT '',
    balance         bigint      NOT NULL,           -- the balance the grant answered
    version         bigint      NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, since, idempotency_key)
);

CREATE TABLE portcullis_usage_detail (
    day     date   NOT NULL,
    tenant  text   NOT NULL,
    user_id text   NOT NULL,  -- '' for none
    key_id  text   NOT NULL,  -- '' for none
    allowed bigint NOT NULL DEFAULT 0,
    denied  bigint NOT NULL DEFAULT 0,
    units   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, tenant, user_id, key_id)
);
CREATE INDEX portcullis_usage_detail_tenant ON portcullis_usage_detail (tenant, day);
