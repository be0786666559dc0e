-- A key's own rate limit (Portcullis schema 5), which beats its tenant's
-- plan: requests per unit, as Envoy's rate limit service counts them.
ALTER TABLE portcullis_keys
    ADD COLUMN rate_limit_per_unit bigint CHECK (rate_limit_per_unit BETWEEN 1 AND 4294967295),
    ADD COLUMN rate_limit_unit     text   CHECK (rate_limit_unit IN ('SECOND', 'MINUTE', 'HOUR', 'DAY', 'MONTH', 'YEAR')),
    ADD CONSTRAINT portcullis_keys_rate_limit_whole CHECK ((rate_limit_per_unit IS NULL) = (rate_limit_unit IS NULL));
