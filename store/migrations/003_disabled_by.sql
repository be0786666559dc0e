-- Who disabled a key (Portcullis schema 3): its owner, an admin of its
-- tenant, or the platform (a management token). A key disabled by a tenant
-- admin or the platform may be re-enabled only by a tenant admin of its
-- tenant or a management token, never by its owner alone.
ALTER TABLE portcullis_keys ADD COLUMN disabled_by text
    CHECK (disabled_by IN ('owner', 'tenant_admin', 'platform'));

-- Keys disabled before this schema: the latest change of each says who.
UPDATE portcullis_keys k SET disabled_by = CASE
        WHEN c.by LIKE 'management:%' THEN 'platform'
        WHEN c.by = 'user:' || k.user_id THEN 'owner'
        ELSE 'tenant_admin' END
    FROM (SELECT DISTINCT ON (key_id) key_id, by FROM portcullis_changes ORDER BY key_id, version DESC) c
    WHERE k.disabled AND c.key_id = k.id;
-- A disabled key without a change on record: only the platform could have.
UPDATE portcullis_keys SET disabled_by = 'platform' WHERE disabled AND disabled_by IS NULL;
