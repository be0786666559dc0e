-- The directory (Portcullis schema 4): tenants, their memberships with
-- roles, and user states, on the same version counter and change log as
-- keys. Every row carries the version of its last change; a deleted tenant
-- and an ended membership stay as tombstones (deleted_at, removed) until
-- pruned, so a replica's mirror learns of them like any other change.

CREATE TABLE portcullis_tenants (
    id           text        PRIMARY KEY,
    display_name text        NOT NULL DEFAULT '',
    aliases      text[]      NOT NULL DEFAULT '{}',
    disabled     boolean     NOT NULL DEFAULT false,
    plan         text,
    created_at   timestamptz NOT NULL,
    created_by   text        NOT NULL,
    deleted_at   timestamptz,
    version      bigint      NOT NULL
);
CREATE INDEX portcullis_tenants_version ON portcullis_tenants (version);

-- Every live store tenant's id and aliases: one namespace, so no two
-- tenants share a name (the unique key is the guarantee, inside the
-- transaction that changes a tenant).
CREATE TABLE portcullis_tenant_names (
    name   text PRIMARY KEY,
    tenant text NOT NULL REFERENCES portcullis_tenants (id)
);
CREATE INDEX portcullis_tenant_names_tenant ON portcullis_tenant_names (tenant);

CREATE TABLE portcullis_members (
    tenant   text    NOT NULL REFERENCES portcullis_tenants (id),
    user_id  text    NOT NULL,
    role     text    NOT NULL,
    removed  boolean NOT NULL DEFAULT false,
    added_at timestamptz NOT NULL DEFAULT now(),
    version  bigint  NOT NULL,
    PRIMARY KEY (tenant, user_id)
);
CREATE INDEX portcullis_members_version ON portcullis_members (version);
CREATE INDEX portcullis_members_user ON portcullis_members (user_id) WHERE NOT removed;

CREATE TABLE portcullis_users (
    id       text    PRIMARY KEY,
    disabled boolean NOT NULL DEFAULT false,
    version  bigint  NOT NULL
);
CREATE INDEX portcullis_users_version ON portcullis_users (version);

-- The change log names what changed: a key (its id, as before), or a
-- tenant, a membership ("tenant/user") or a user.
ALTER TABLE portcullis_changes ADD COLUMN kind text NOT NULL DEFAULT 'key';
ALTER TABLE portcullis_changes DROP CONSTRAINT portcullis_changes_pkey, ADD PRIMARY KEY (version, kind, key_id);
