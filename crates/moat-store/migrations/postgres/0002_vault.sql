-- moat schema v2 (PostgreSQL): teams and the credential vault. Keep in step
-- with migrations/sqlite/0002_vault.sql. Run as the schema owner.
--
-- The store does no cryptography: credential values arrive sealed (AEAD
-- under a tenant data key, DEK) and DEKs arrive wrapped by the deployment's
-- key-encryption key (KEK). Neither is ever stored in the clear.

-- Target of the credentials' (tenant_id, server_id) foreign key: a credential
-- can only point at a server of its own tenant.
ALTER TABLE servers ADD CONSTRAINT servers_tenant_id_id_key UNIQUE (tenant_id, id);

CREATE TABLE teams (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);

CREATE TABLE team_members (
    tenant_id   TEXT    NOT NULL,
    team_id     TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    added_at    BIGINT  NOT NULL,
    PRIMARY KEY (team_id, user_id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX team_members_user ON team_members (tenant_id, user_id);

-- A tenant's versioned data keys, stored only wrapped by the KEK. The active
-- version is the highest one; older versions stay while credentials use them.
CREATE TABLE tenant_keys (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version     BIGINT  NOT NULL CHECK (version > 0),
    wrapped     BYTEA   NOT NULL,
    provider    TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

-- Upstream credentials, sealed. One row per (scope, server, injection slot):
-- `slot` is 'header:<lowercased header name>' for header credentials,
-- 'header:authorization' for bearer and basic, 'env:<NAME>' for env.
-- `scope_id` repeats the owner (user, team or tenant id) so that one unique
-- key covers every tier. `revision` bumps when the value changes, not when
-- it is re-encrypted under another key version.
CREATE TABLE credentials (
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    tier          TEXT    NOT NULL CHECK (tier IN ('personal', 'team', 'org', 'service')),
    user_id       TEXT,
    team_id       TEXT,
    scope_id      TEXT    NOT NULL,
    server_id     TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('header', 'bearer', 'basic', 'env')),
    target        TEXT    NOT NULL CHECK (target <> ''),
    slot          TEXT    NOT NULL,
    key_version   BIGINT  NOT NULL,
    sealed        BYTEA   NOT NULL,
    revision      BIGINT  NOT NULL DEFAULT 1 CHECK (revision > 0),
    created_by    TEXT,
    created_at    BIGINT  NOT NULL,
    updated_by    TEXT,
    updated_at    BIGINT  NOT NULL,
    last_used_at  BIGINT,
    UNIQUE (tenant_id, tier, scope_id, server_id, slot),
    FOREIGN KEY (tenant_id, server_id) REFERENCES servers (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id) ON DELETE CASCADE,
    -- No cascade: a data key still in use cannot be deleted.
    FOREIGN KEY (tenant_id, key_version) REFERENCES tenant_keys (tenant_id, version),
    CHECK (
        (tier IN ('personal', 'service') AND user_id IS NOT NULL AND team_id IS NULL AND scope_id = user_id)
        OR (tier = 'team' AND team_id IS NOT NULL AND user_id IS NULL AND scope_id = team_id)
        OR (tier = 'org' AND user_id IS NULL AND team_id IS NULL AND scope_id = tenant_id)
    ),
    CHECK (
        (kind = 'header' AND slot = 'header:' || lower(target))
        OR (kind IN ('bearer', 'basic') AND slot = 'header:authorization')
        OR (kind = 'env' AND slot = 'env:' || target)
    )
);

CREATE INDEX credentials_server ON credentials (tenant_id, server_id);
CREATE INDEX credentials_key_version ON credentials (tenant_id, key_version);
CREATE INDEX credentials_user ON credentials (tenant_id, user_id);
CREATE INDEX credentials_team ON credentials (tenant_id, team_id);

-- Row-level security, as in 0001: a row is visible and writable only when its
-- tenant_id equals the transaction's `app.tenant_id`, or when the transaction
-- set `app.bypass_rls` to 'on' (only the store's named cross-tenant methods).
ALTER TABLE teams ENABLE ROW LEVEL SECURITY;
ALTER TABLE teams FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON teams
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE team_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE team_members FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON team_members
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE tenant_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_keys
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON credentials
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

-- Grants for the application role. The migration cannot know that role's
-- name, so it carries the grants forward: every role (other than the owner
-- and PUBLIC) that may already DELETE from `servers` is the application role
-- of an existing deployment, and gets the same DML on the new tables. A fresh
-- deployment grants after migrating (see the crate docs), and must include
-- these tables.
DO $$
DECLARE
    grantee_name TEXT;
BEGIN
    FOR grantee_name IN
        SELECT DISTINCT r.rolname
        FROM pg_class c
        CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = 'servers'::regclass
          AND a.privilege_type = 'DELETE'
          AND a.grantee <> c.relowner
    LOOP
        EXECUTE format(
            'GRANT SELECT, INSERT, UPDATE, DELETE ON teams, team_members, tenant_keys, credentials TO %I',
            grantee_name);
    END LOOP;
END
$$;
