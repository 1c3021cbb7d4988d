-- moat schema v4 (PostgreSQL): identity. The OAuth 2.1 authorization server's
-- clients, grants and tokens, the tenants' signing keys and identity
-- providers, and browser sessions. Keep in step with
-- migrations/sqlite/0004_oauth.sql.
--
-- Every token, code and session id is stored only as a SHA-256 digest (they
-- are 256-bit random values, so a digest is enough to make a stolen table
-- useless); client secrets as Argon2id hashes; private keys and the identity
-- providers' client secrets sealed by the vault in `tenant_secrets`.

-- Small secrets of a tenant, sealed under one of its data keys (the AAD binds
-- tenant, purpose and id): signing keys' private halves, identity-provider
-- client secrets. Data-key rotation re-seals them like credentials.
CREATE TABLE tenant_secrets (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    purpose      TEXT    NOT NULL CHECK (purpose IN ('signing_key', 'idp_client_secret')),
    key_version  BIGINT NOT NULL,
    sealed       BYTEA    NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, key_version) REFERENCES tenant_keys (tenant_id, version)
);

CREATE INDEX tenant_secrets_key_version ON tenant_secrets (tenant_id, key_version);

-- A tenant's access-token signing keys. The newest unretired one signs; a
-- retired one stays in the JWKS until `retired_at` + the grace period, so
-- tokens it signed keep verifying until they expire.
CREATE TABLE signing_keys (
    kid          TEXT    NOT NULL PRIMARY KEY,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    alg          TEXT    NOT NULL CHECK (alg IN ('RS256', 'ES256')),
    public_jwk   TEXT    NOT NULL,
    secret_id    TEXT    NOT NULL,
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT,
    FOREIGN KEY (tenant_id, secret_id) REFERENCES tenant_secrets (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX signing_keys_tenant ON signing_keys (tenant_id, created_at);

-- Per-tenant identity settings: the dynamic-registration and client-metadata
-- switches, the revocation watermark (every token and session issued before
-- it is dead), and the identity provider for human login.
CREATE TABLE tenant_auth (
    tenant_id               TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    allow_registration      BOOLEAN NOT NULL DEFAULT TRUE,
    allow_metadata_clients  BOOLEAN NOT NULL DEFAULT TRUE,
    revoked_before          BIGINT NOT NULL DEFAULT 0,
    idp_issuer              TEXT,
    idp_client_id           TEXT,
    idp_secret_id           TEXT,
    idp_scopes              TEXT    NOT NULL DEFAULT 'openid email profile',
    idp_groups_claim        TEXT    NOT NULL DEFAULT 'groups',
    idp_role_map            TEXT    NOT NULL DEFAULT '{}',
    idp_default_role        TEXT    NOT NULL DEFAULT 'member' CHECK (idp_default_role IN ('admin', 'member')),
    updated_at              BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, idp_secret_id) REFERENCES tenant_secrets (tenant_id, id)
);

-- The identity provider's subject of a human user.
ALTER TABLE users ADD COLUMN idp_subject TEXT;
CREATE UNIQUE INDEX users_idp_subject ON users (tenant_id, idp_subject) WHERE idp_subject IS NOT NULL;

-- OAuth clients. `tenant_id` is set for clients an admin created (service
-- clients for the client-credentials grant, public clients for the code
-- flow); dynamically registered clients (RFC 7591) and client-metadata
-- documents belong to no tenant and get rights only when a user of a tenant
-- that allows them grants consent. A service client acts as its own machine
-- user (`user_id`, kind service).
CREATE TABLE oauth_clients (
    id             TEXT    NOT NULL PRIMARY KEY,
    tenant_id      TEXT    REFERENCES tenants (id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('service', 'public', 'confidential')),
    source         TEXT    NOT NULL CHECK (source IN ('admin', 'dynamic', 'metadata')),
    user_id        TEXT,
    secret_hash    TEXT,
    auth_method    TEXT    NOT NULL CHECK (auth_method IN ('none', 'client_secret_basic', 'client_secret_post')),
    redirect_uris  TEXT    NOT NULL DEFAULT '[]',
    scopes         TEXT    NOT NULL DEFAULT '[]',
    metadata       TEXT    NOT NULL DEFAULT '{}',
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    CHECK ((source = 'admin') = (tenant_id IS NOT NULL)),
    CHECK ((kind = 'service') = (user_id IS NOT NULL)),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE UNIQUE INDEX oauth_clients_name ON oauth_clients (tenant_id, name) WHERE tenant_id IS NOT NULL AND revoked_at IS NULL;

-- Authorization requests in flight: from /oauth/authorize to the login at the
-- identity provider and back, then consent. Keyed by the digest of the
-- handle the browser holds; the PKCE challenge and state of the client, and
-- moat's own state, nonce and PKCE verifier towards the identity provider,
-- never leave the server.
CREATE TABLE oauth_pending (
    id_hash         TEXT    NOT NULL PRIMARY KEY,
    tenant_id       TEXT    REFERENCES tenants (id) ON DELETE CASCADE,
    client_id       TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    redirect_uri    TEXT    NOT NULL,
    state           TEXT,
    code_challenge  TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    resource        TEXT    NOT NULL,
    user_id         TEXT,
    idp_state_hash  TEXT    UNIQUE,
    idp_nonce       TEXT,
    idp_verifier    TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);

CREATE INDEX oauth_pending_expiry ON oauth_pending (expires_at);

-- A grant: one client acting for one user (or a service client for itself),
-- the family of every refresh token rotated from it. Revoking the family
-- ends its access tokens (`sid`) and refresh tokens.
CREATE TABLE oauth_grants (
    id               TEXT    NOT NULL PRIMARY KEY,
    tenant_id        TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    client_id        TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id          TEXT    NOT NULL,
    scope            TEXT    NOT NULL,
    resource         TEXT    NOT NULL,
    allowed_origins  TEXT    NOT NULL DEFAULT '[]',
    created_at       BIGINT NOT NULL,
    revoked_at       BIGINT,
    revoked_reason   TEXT,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX oauth_grants_user ON oauth_grants (tenant_id, user_id);

-- Authorization codes: single use, short-lived. `grant_id` is set when the
-- code is redeemed, so that a second redemption can revoke what the first
-- one issued (OAuth 2.1 §4.1.3); `reused_at` tells a first redemption still
-- in flight that a second one came.
CREATE TABLE oauth_codes (
    code_hash       TEXT    NOT NULL PRIMARY KEY,
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    client_id       TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id         TEXT    NOT NULL,
    redirect_uri    TEXT    NOT NULL,
    code_challenge  TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    resource        TEXT    NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT,
    reused_at       BIGINT,
    grant_id        TEXT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Refresh tokens: opaque, rotated on every use. A used one presented again
-- revokes its whole grant (reuse detection).
CREATE TABLE oauth_refresh_tokens (
    token_hash  TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    grant_id    TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    FOREIGN KEY (tenant_id, grant_id) REFERENCES oauth_grants (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX oauth_refresh_tokens_grant ON oauth_refresh_tokens (tenant_id, grant_id);

-- Access tokens revoked before their expiry (RFC 7009), by `jti`.
CREATE TABLE oauth_revoked_tokens (
    jti         TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL
);

-- What a user consented to, per client: asked again when a client wants more.
CREATE TABLE oauth_consents (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     TEXT    NOT NULL,
    client_id   TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scope       TEXT    NOT NULL,
    resource    TEXT    NOT NULL,
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, client_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Browser sessions of humans logged in through the identity provider.
CREATE TABLE browser_sessions (
    id_hash     TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX browser_sessions_user ON browser_sessions (tenant_id, user_id);

-- Row-level security, as in 0001-0003. `oauth_clients` and `oauth_pending`
-- also hold rows of no tenant (dynamically registered clients, requests whose
-- tenant is not chosen yet): only the store's named cross-tenant methods see
-- those.

ALTER TABLE tenant_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_secrets
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE signing_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE signing_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON signing_keys
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE tenant_auth ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_auth FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_auth
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE oauth_clients ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_clients FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oauth_clients
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE oauth_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_pending FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oauth_pending
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE oauth_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oauth_grants
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE oauth_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oauth_codes
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE oauth_refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oauth_refresh_tokens
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE oauth_revoked_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_revoked_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oauth_revoked_tokens
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE oauth_consents ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_consents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oauth_consents
    USING (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true)
           OR current_setting('app.bypass_rls', true) = 'on');

ALTER TABLE browser_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE browser_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON browser_sessions
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
            'GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_secrets, signing_keys, tenant_auth, oauth_clients, '
            'oauth_pending, oauth_grants, oauth_codes, oauth_refresh_tokens, oauth_revoked_tokens, '
            'oauth_consents, browser_sessions TO %I',
            grantee_name);
    END LOOP;
END
$$;
