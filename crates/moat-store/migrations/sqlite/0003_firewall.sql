-- moat schema v3 (SQLite): the firewall's state. Keep in step with
-- migrations/postgres/0003_firewall.sql.

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
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    decided_by    TEXT,
    decided_at    INTEGER,
    FOREIGN KEY (tenant_id, server_id) REFERENCES servers (tenant_id, id) ON DELETE CASCADE
) STRICT;

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
    first_seen_at  INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, server_id, kind, name),
    FOREIGN KEY (tenant_id, server_id) REFERENCES servers (tenant_id, id) ON DELETE CASCADE
) STRICT;

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
    budget_bytes INTEGER CHECK (budget_bytes IS NULL OR budget_bytes > 0),
    updated_by  TEXT,
    updated_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, server, tool),
    CHECK (server <> '' OR tool = '')
) STRICT;

-- A tenant's own detection patterns (e.g. employee or customer numbers).
CREATE TABLE firewall_patterns (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    pattern     TEXT    NOT NULL,
    created_by  TEXT,
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
) STRICT;
