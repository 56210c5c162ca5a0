-- The same tables, columns and indexes as migrations/sqlite/0001_init.sql, in
-- PostgreSQL types: timestamptz for times, jsonb for JSON, bigint for counters.
-- Everything is created in current_schema() (the connection's search_path),
-- never in a named schema, so that each test can have a schema of its own.
CREATE TABLE tenants (
    id          text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    retention_s bigint,
    next_seq    bigint NOT NULL DEFAULT 0
);

CREATE TABLE jobs (
    id               text PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES tenants (id),
    app_id           text,
    seq              bigint NOT NULL,
    kind             text NOT NULL,
    name             text,
    status           text NOT NULL CHECK (status IN ('scheduled', 'queued', 'running', 'canceling',
                                                     'succeeded', 'failed', 'canceled', 'skipped')),
    priority         integer NOT NULL DEFAULT 0,
    input            jsonb NOT NULL,
    result           jsonb,
    error            jsonb,
    stats            jsonb,
    progress         jsonb,
    labels           jsonb,
    parent_id        text,
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 1,
    run_at           timestamptz NOT NULL,
    timeout_s        double precision,
    retention_s      bigint NOT NULL,
    idempotency_key  text,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL,
    expires_at       timestamptz,
    lease_expires_at timestamptz,
    worker_id        text
);

-- The claim walks this per tenant: only queued rows are in it.
CREATE INDEX jobs_queue ON jobs (tenant_id, priority DESC, run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_tenant ON jobs (tenant_id, id);
CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status IN ('running', 'canceling');
CREATE INDEX jobs_scheduled ON jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX jobs_expires ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE job_errors (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL,
    job_id      text NOT NULL,
    attempt     integer NOT NULL,
    code        text,
    message     text NOT NULL,
    source      text,
    record      jsonb,
    retry_data  jsonb,
    resolved    boolean NOT NULL DEFAULT false,
    retried     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL
);
CREATE INDEX job_errors_job ON job_errors (job_id, id);

-- `n` stands in for SQLite's implicit rowid: the order in which history was written.
CREATE TABLE job_attempts (
    n          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     text NOT NULL,
    attempt    integer NOT NULL,
    status     text NOT NULL,
    error      jsonb,
    started_at timestamptz,
    ended_at   timestamptz,
    worker_id  text
);
CREATE INDEX job_attempts_job ON job_attempts (job_id, attempt);

CREATE TABLE artifacts (
    tenant_id    text NOT NULL,
    job_id       text NOT NULL,
    name         text NOT NULL,
    blob_key     text NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    content_type text NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (job_id, name)
);

-- Kept for parity with SQLite; on PostgreSQL, maintenance uses advisory locks.
CREATE TABLE locks (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);

INSERT INTO tenants (id, created_at) VALUES ('default', clock_timestamp());
