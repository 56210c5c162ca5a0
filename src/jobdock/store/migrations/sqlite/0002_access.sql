-- Apps, API keys, uploads and webhook subscriptions.
CREATE TABLE apps (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    name       TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    prefix      TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    app_id      TEXT REFERENCES apps (id),
    scopes      TEXT NOT NULL,
    name        TEXT,
    created_at  REAL NOT NULL,
    expires_at  REAL,
    revoked_at  REAL
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    app_id       TEXT,
    name         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    blob_key     TEXT NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL
);
CREATE INDEX uploads_expires ON uploads (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    app_id      TEXT,
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    description TEXT,
    created_at  REAL NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, id);
