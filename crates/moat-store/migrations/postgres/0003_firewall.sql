-- moat schema v3 (PostgreSQL): the firewall's state. Keep in step with
-- migrations/sqlite/0003_firewall.sql.

-- Calls held for an admin's decision, and tool descriptions that changed
-- after they were first seen ("rug pulls"). `summary` is JSON metadata about
-- the findings (category, rule, action): never the matched text.
CREATE TABLE approvals (
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL CHECK (kind IN ('call', 'tool_change')),
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    server_id     TEXT    NOT NULL,
    server_name   TEXT    NOT NULL,
    target        TEXT    NOT NULL,
    method        TEXT    NOT NULL,
    requested_by  TEXT,
    summary       TEXT    NOT NULL DEFAULT '{}',
    hash          TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    decided_by    TEXT,
    decided_at    BIGINT,
    FOREIGN KEY (tenant_id, server_id) REFERENCES servers (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX approvals_status ON approvals (tenant_id, status, created_at);

-- The fingerprint of every tool, prompt and resource description seen per
-- server: `approved_hash` is the one admins accepted (the first one seen),
-- `seen_hash` the latest one the upstream sent.
CREATE TABLE tool_pins (
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    server_id      TEXT    NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('tool', 'prompt', 'resource', 'resource_template')),
    name           TEXT    NOT NULL,
    approved_hash  TEXT    NOT NULL,
    seen_hash      TEXT    NOT NULL,
    first_seen_at  BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, server_id, kind, name),
    FOREIGN KEY (tenant_id, server_id) REFERENCES servers (tenant_id, id) ON DELETE CASCADE
);

-- A tenant's firewall overrides: for the whole tenant (server = '' and
-- tool = ''), one server, or one tool of a server. `rules` is a JSON array
-- of policy rules appended to the deployment's; `mode` replaces its mode.
CREATE TABLE firewall_policies (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    server      TEXT    NOT NULL DEFAULT '',
    tool        TEXT    NOT NULL DEFAULT '',
    mode        TEXT    CHECK (mode IS NULL OR mode IN ('enforce', 'shadow', 'disabled')),
    rules       TEXT    NOT NULL DEFAULT '[]',
    budget_bytes BIGINT CHECK (budget_bytes IS NULL OR budget_bytes > 0),
    updated_by  TEXT,
    updated_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, server, tool),
    CHECK (server <> '' OR tool = '')
);

-- A tenant's own detection patterns (e.g. employee or customer numbers).
CREATE TABLE firewall_patterns (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    pattern     TEXT    NOT NULL,
    created_by  TEXT,
    created_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

-- Row-level security, as in 0001 and 0002.
ALTER TABLE approvals ENABLE ROW LEVEL SECURITY;
ALTER TABLE approvals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON approvals
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE tool_pins ENABLE ROW LEVEL SECURITY;
ALTER TABLE tool_pins FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tool_pins
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE firewall_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE firewall_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON firewall_policies
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE firewall_patterns ENABLE ROW LEVEL SECURITY;
ALTER TABLE firewall_patterns FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON firewall_patterns
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

-- Grants for the application role, carried forward as in 0002.
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
            'GRANT SELECT, INSERT, UPDATE, DELETE ON approvals, tool_pins, firewall_policies, firewall_patterns TO %I',
            grantee_name);
    END LOOP;
END
$$;
