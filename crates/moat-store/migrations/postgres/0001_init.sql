-- moat schema v1 (PostgreSQL). Keep in step with migrations/sqlite/0001_init.sql.
-- Run as the schema owner. The application connects as another role that is
-- neither superuser nor owner and has only DML grants; see the crate docs.
--
-- Tenant isolation: every tenant-owned table has FORCE ROW LEVEL SECURITY and
-- one policy: a row is visible and writable only when its tenant_id equals
-- the transaction's `app.tenant_id` setting (unset or empty: no rows), or when
-- the transaction set `app.bypass_rls` to 'on' (only the store's named
-- cross-tenant methods do; both settings are transaction-local).

CREATE TABLE tenants (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE users (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    email       TEXT,
    kind        TEXT    NOT NULL CHECK (kind IN ('human', 'agent', 'service', 'workflow')),
    role        TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at  BIGINT  NOT NULL,
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);

CREATE TABLE api_keys (
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id       TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    public_id     TEXT    NOT NULL UNIQUE,
    secret_hash   TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    kind          TEXT    NOT NULL CHECK (kind IN ('human', 'agent', 'service', 'workflow')),
    operator      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL,
    last_used_at  BIGINT,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

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
    allow_anonymous  BOOLEAN NOT NULL DEFAULT FALSE,
    source           TEXT    NOT NULL CHECK (source IN ('config', 'api')),
    enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE audit_events (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant_id    TEXT,
    at           BIGINT  NOT NULL,
    actor_kind   TEXT    NOT NULL,
    actor_id     TEXT,
    action       TEXT    NOT NULL,
    resource     TEXT,
    result       TEXT    NOT NULL CHECK (result IN ('ok', 'denied', 'error')),
    source_addr  TEXT,
    request_id   TEXT,
    latency_ms   BIGINT,
    metadata     TEXT    NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_events_tenant_at ON audit_events (tenant_id, at);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;

CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Row-level security on every tenant-owned table. `tenants` itself is the
-- directory (ids and names, needed to resolve a tenant before one is known)
-- and has no policy.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE servers ENABLE ROW LEVEL SECURITY;
ALTER TABLE servers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON servers
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');
