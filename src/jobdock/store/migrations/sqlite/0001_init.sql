-- Times are Unix seconds (REAL); JSON columns are TEXT.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    created_at  REAL NOT NULL,
    retention_s INTEGER,
    next_seq    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    app_id           TEXT,
    seq              INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    name             TEXT,
    status           TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    input            TEXT NOT NULL,
    result           TEXT,
    error            TEXT,
    stats            TEXT,
    progress         TEXT,
    labels           TEXT,
    parent_id        TEXT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 1,
    run_at           REAL NOT NULL,
    timeout_s        REAL,
    retention_s      INTEGER NOT NULL,
    idempotency_key  TEXT,
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    updated_at       REAL NOT NULL,
    expires_at       REAL,
    lease_expires_at REAL,
    worker_id        TEXT
) WITHOUT ROWID;

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
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    code        TEXT,
    message     TEXT NOT NULL,
    source      TEXT,
    record      TEXT,
    retry_data  TEXT,
    resolved    INTEGER NOT NULL DEFAULT 0,
    retried     INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL
);
CREATE INDEX job_errors_job ON job_errors (job_id, id);

CREATE TABLE job_attempts (
    job_id     TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    status     TEXT NOT NULL,
    error      TEXT,
    started_at REAL,
    ended_at   REAL,
    worker_id  TEXT
);
CREATE INDEX job_attempts_job ON job_attempts (job_id, attempt);

CREATE TABLE artifacts (
    tenant_id    TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    name         TEXT NOT NULL,
    blob_key     TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    created_at   REAL NOT NULL,
    PRIMARY KEY (job_id, name)
);

-- Leases on named singletons (maintenance); SQLite has no advisory locks.
CREATE TABLE locks (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL
);

INSERT INTO tenants (id, created_at) VALUES ('default', CAST(strftime('%s', 'now') AS REAL));
