-- moat schema v2 (SQLite): teams and the credential vault. Keep in step with
-- migrations/postgres/0002_vault.sql.
--
-- The store does no cryptography: credential values arrive sealed (AEAD
-- under a tenant data key, DEK) and DEKs arrive wrapped by the deployment's
-- key-encryption key (KEK). Neither is ever stored in the clear.

-- Target of the credentials' (tenant_id, server_id) foreign key: a credential
-- can only point at a server of its own tenant.
CREATE UNIQUE INDEX servers_tenant_id_id ON servers (tenant_id, id);

CREATE TABLE teams (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
) STRICT;

CREATE TABLE team_members (
    tenant_id   TEXT    NOT NULL,
    team_id     TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    added_at    INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

CREATE INDEX team_members_user ON team_members (tenant_id, user_id);

-- A tenant's versioned data keys, stored only wrapped by the KEK. The active
-- version is the highest one; older versions stay while credentials use them.
CREATE TABLE tenant_keys (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL CHECK (version > 0),
    wrapped     BLOB    NOT NULL,
    provider    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, version)
) STRICT;

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
    key_version   INTEGER NOT NULL,
    sealed        BLOB    NOT NULL,
    revision      INTEGER NOT NULL DEFAULT 1 CHECK (revision > 0),
    created_by    TEXT,
    created_at    INTEGER NOT NULL,
    updated_by    TEXT,
    updated_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
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
) STRICT;

CREATE INDEX credentials_server ON credentials (tenant_id, server_id);
CREATE INDEX credentials_key_version ON credentials (tenant_id, key_version);
CREATE INDEX credentials_user ON credentials (tenant_id, user_id);
CREATE INDEX credentials_team ON credentials (tenant_id, team_id);
