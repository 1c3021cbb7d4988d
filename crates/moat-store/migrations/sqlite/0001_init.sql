-- moat schema v1 (SQLite). Keep in step with migrations/postgres/0001_init.sql.
-- Ids are TEXT (UUIDv7), timestamps INTEGER unix milliseconds (64-bit),
-- JSON is TEXT, booleans INTEGER 0/1. STRICT tables refuse values of the
-- wrong type instead of storing them.

CREATE TABLE tenants (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    email       TEXT,
    kind        TEXT    NOT NULL CHECK (kind IN ('human', 'agent', 'service', 'workflow')),
    role        TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, name),
    -- target of the (tenant_id, user_id) foreign keys: a row can only point
    -- at a user of its own tenant
    UNIQUE (tenant_id, id)
) STRICT;

CREATE TABLE api_keys (
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id       TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    public_id     TEXT    NOT NULL UNIQUE,
    secret_hash   TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    kind          TEXT    NOT NULL CHECK (kind IN ('human', 'agent', 'service', 'workflow')),
    operator      INTEGER NOT NULL DEFAULT 0 CHECK (operator IN (0, 1)),
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    expires_at    INTEGER,
    revoked_at    INTEGER,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

-- A name is unique among a tenant's live keys; a revoked key frees its name.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (tenant_id, name) WHERE revoked_at IS NULL;
CREATE INDEX api_keys_user ON api_keys (tenant_id, user_id);

CREATE TABLE servers (
    id               TEXT    NOT NULL PRIMARY KEY,
    tenant_id        TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    transport        TEXT    NOT NULL CHECK (transport IN ('stdio', 'streamable-http', 'sse')),
    url              TEXT,
    command          TEXT,
    env              TEXT    NOT NULL DEFAULT '{}',
    headers          TEXT    NOT NULL DEFAULT '{}',
    allow_anonymous  INTEGER NOT NULL DEFAULT 0 CHECK (allow_anonymous IN (0, 1)),
    source           TEXT    NOT NULL CHECK (source IN ('config', 'api')),
    enabled          INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
) STRICT;

-- Append-only. No foreign key to tenants: deleting a tenant keeps its trail,
-- and events with no known tenant (a garbage key) have tenant_id NULL.
CREATE TABLE audit_events (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant_id    TEXT,
    at           INTEGER NOT NULL,
    actor_kind   TEXT    NOT NULL,
    actor_id     TEXT,
    action       TEXT    NOT NULL,
    resource     TEXT,
    result       TEXT    NOT NULL CHECK (result IN ('ok', 'denied', 'error')),
    source_addr  TEXT,
    request_id   TEXT,
    latency_ms   INTEGER,
    metadata     TEXT    NOT NULL DEFAULT '{}'
) STRICT;

CREATE INDEX audit_events_tenant_at ON audit_events (tenant_id, at);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
