-- Apps, API keys, uploads and webhook subscriptions.
CREATE TABLE apps (
    id         text PRIMARY KEY,
    tenant_id  text NOT NULL REFERENCES tenants (id),
    name       text NOT NULL,
    created_at timestamptz NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    prefix      text NOT NULL UNIQUE,
    secret_hash text NOT NULL,
    tenant_id   text NOT NULL REFERENCES tenants (id),
    app_id      text REFERENCES apps (id),
    scopes      jsonb NOT NULL,
    name        text,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE uploads (
    id           text PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (id),
    app_id       text,
    name         text NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    content_type text NOT NULL,
    blob_key     text NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz
);
CREATE INDEX uploads_expires ON uploads (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE webhooks (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id),
    app_id      text,
    url         text NOT NULL,
    events      jsonb NOT NULL,
    secret      text NOT NULL,
    description text,
    created_at  timestamptz NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, id);
