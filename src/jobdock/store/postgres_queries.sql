-- Every SQL statement of the PostgreSQL store, as named blocks (see queries.py).
--
-- Conventions:
-- * Tables are never schema-qualified: they live in the connection's current_schema().
-- * `clock` is a one-row CTE holding the statement's "now": the caller's `now`
--   when given (tests fix the clock), else the database clock. A CTE that calls a
--   volatile function is evaluated once, so every column of a statement gets the
--   same instant.
-- * Writers that touch several job rows lock them first in id order (a
--   `SELECT … ORDER BY id FOR UPDATE` CTE), so that claim, completion, heartbeat
--   and maintenance never deadlock against each other.
-- * Arrays (the unnest batches) are sent in binary (%(name)b): psycopg's text
--   array format escapes every element, which costs more than the insert itself.
-- * Every status change repeats its source statuses in its WHERE clause; under
--   READ COMMITTED a row changed meanwhile is re-checked after its lock is taken.


-- name: schema_name
SELECT current_schema() AS schema;

-- name: now
SELECT clock_timestamp() AS now;

-- name: ping
SELECT 1 AS ok;


-- name: migration_lock
-- Serialises migrators of one schema until their transaction ends.
SELECT pg_advisory_xact_lock(%(key)s);

-- name: migration_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- name: migration_versions
SELECT version FROM schema_migrations ORDER BY version;

-- name: migration_record
INSERT INTO schema_migrations (version) VALUES (%(version)s);


-- name: advisory_try_lock
SELECT pg_try_advisory_lock(%(key)s) AS locked;

-- name: advisory_unlock
SELECT pg_advisory_unlock(%(key)s) AS unlocked;


-- name: tenant_create
INSERT INTO tenants (id, retention_s) VALUES (%(id)s, %(retention_s)s)
RETURNING id, created_at, retention_s;

-- name: tenant_get
-- Columns named as the model's fields: rows become dataclasses as they are.
SELECT id, created_at, retention_s FROM tenants WHERE id = %(id)s;

-- name: tenant_list
-- Columns named as the model's fields: rows become dataclasses as they are.
SELECT id, created_at, retention_s FROM tenants ORDER BY id;

-- name: tenants_lock
-- Locks the tenants of a batch (in id order) until the insert commits: this
-- serialises a tenant's inserts, which makes `seq` gapless and lets the
-- idempotency check below see every committed key.
SELECT id, next_seq FROM tenants WHERE id = ANY(%(ids)b::text[]) ORDER BY id FOR UPDATE;


-- name: jobs_by_idempotency_key
SELECT j.*
FROM jobs j
JOIN unnest(%(tenant_ids)b::text[], %(keys)b::text[]) AS k (tenant_id, idempotency_key)
  ON j.tenant_id = k.tenant_id AND j.idempotency_key = k.idempotency_key;

-- name: job_insert_many
-- One statement for the whole batch: the tenants' new sequence counters, the
-- rows (unnest of one array per column, far faster than a row per statement)
-- and the wake-up, which PostgreSQL delivers only if the transaction commits.
WITH counters AS (
    UPDATE tenants t
    SET next_seq = v.next_seq
    FROM unnest(%(seq_tenants)b::text[], %(seq_values)b::bigint[]) AS v (id, next_seq)
    WHERE t.id = v.id
    RETURNING t.id
), inserted AS (
    INSERT INTO jobs (
        id, tenant_id, app_id, seq, kind, name, status, priority, input, labels, parent_id,
        attempt, max_attempts, run_at, timeout_s, retention_s, idempotency_key,
        created_at, updated_at
    )
    SELECT n.id, n.tenant_id, n.app_id, n.seq, n.kind, n.name, n.status, n.priority,
           n.input::jsonb, n.labels::jsonb, n.parent_id,
           0, n.max_attempts, n.run_at, n.timeout_s, n.retention_s, n.idempotency_key,
           n.created_at, n.created_at
    FROM unnest(
        %(ids)b::text[], %(tenant_ids)b::text[], %(app_ids)b::text[], %(seqs)b::bigint[],
        %(kinds)b::text[], %(names)b::text[], %(statuses)b::text[], %(priorities)b::integer[],
        %(inputs)b::text[], %(labels)b::text[], %(parent_ids)b::text[],
        %(max_attempts)b::integer[], %(run_ats)b::timestamptz[], %(timeouts)b::float8[],
        %(retentions)b::bigint[], %(keys)b::text[], %(created_ats)b::timestamptz[]
    ) AS n (
        id, tenant_id, app_id, seq, kind, name, status, priority, input, labels, parent_id,
        max_attempts, run_at, timeout_s, retention_s, idempotency_key, created_at
    )
    ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING 1
), wake AS (
    SELECT pg_notify(%(channel)s, '') WHERE %(notify)s
)
SELECT (SELECT count(*) FROM inserted) AS inserted,
       (SELECT count(*) FROM counters) AS counters,
       (SELECT count(*) FROM wake) AS woken;

-- name: job_insert_one_tenant
-- Jobs of one tenant without idempotency keys, in one statement and so in one
-- transaction (the pool's connections autocommit): one round trip where
-- job_insert_many needs BEGIN, tenants_lock, itself and COMMIT. Bumping the
-- tenant's counter locks its row until the statement commits, so a tenant's
-- inserts are serialised and `seq` stays gapless, as with tenants_lock. Each
-- job's seq is the counter's old value plus its place in the batch. An unknown
-- tenant has no counter, so nothing is inserted and no row comes back: the
-- caller reports TenantNotFound (no trigger checks inserts since 0005).
-- The jobs come as one JSON array of objects (%(jobs)s): psycopg dumps each
-- array parameter in Python, which took half of a one-job submit's CPU.
WITH counter AS (
    UPDATE tenants
    SET next_seq = next_seq + %(count)s
    WHERE id = %(tenant_id)s
    RETURNING next_seq - %(count)s AS before
), inserted AS (
    INSERT INTO jobs (
        id, tenant_id, app_id, seq, kind, name, status, priority, input, labels, parent_id,
        attempt, max_attempts, run_at, timeout_s, retention_s, created_at, updated_at
    )
    SELECT n.id, %(tenant_id)s, n.app_id, counter.before + n.place,
           n.kind, n.name, n.status, n.priority, n.input, n.labels, n.parent_id,
           0, n.max_attempts, n.run_at, n.timeout_s, n.retention_s, n.created_at, n.created_at
    FROM counter
    CROSS JOIN ROWS FROM (json_to_recordset(%(jobs)s::json) AS (
        id text, app_id text, kind text, name text, status text, priority integer,
        input jsonb, labels jsonb, parent_id text, max_attempts integer, run_at timestamptz,
        timeout_s float8, retention_s bigint, created_at timestamptz
    )) WITH ORDINALITY AS n (
        id, app_id, kind, name, status, priority, input, labels, parent_id, max_attempts,
        run_at, timeout_s, retention_s, created_at, place
    )
    RETURNING id, seq
), wake AS (
    SELECT pg_notify(%(channel)s, '') WHERE %(notify)s AND EXISTS (SELECT 1 FROM counter)
)
SELECT i.id, i.seq, (SELECT count(*) FROM wake) AS woken
FROM inserted i;

-- name: job_insert_one
-- A single job without an idempotency key (App.submit), as job_insert_one_tenant
-- but with a parameter per column: decoding a JSON array of one object on the
-- server cost a sixth of the statement's CPU.
WITH counter AS (
    UPDATE tenants
    SET next_seq = next_seq + 1
    WHERE id = %(tenant_id)s
    RETURNING next_seq
), inserted AS (
    INSERT INTO jobs (
        id, tenant_id, app_id, seq, kind, name, status, priority, input, labels, parent_id,
        attempt, max_attempts, run_at, timeout_s, retention_s, created_at, updated_at
    )
    SELECT %(id)s, %(tenant_id)s, %(app_id)s, counter.next_seq, %(kind)s, %(name)s,
           %(status)s, %(priority)s, %(input)s::jsonb, %(labels)s::jsonb, %(parent_id)s,
           0, %(max_attempts)s, %(run_at)s, %(timeout_s)s::float8, %(retention_s)s,
           %(created_at)s, %(created_at)s
    FROM counter
    RETURNING id, seq
), wake AS (
    SELECT pg_notify(%(channel)s, '') WHERE %(notify)s AND EXISTS (SELECT 1 FROM counter)
)
SELECT i.id, i.seq, (SELECT count(*) FROM wake) AS woken
FROM inserted i;

-- name: tenants_set_next_seq
UPDATE tenants t
SET next_seq = v.next_seq
FROM unnest(%(ids)b::text[], %(next_seqs)b::bigint[]) AS v (id, next_seq)
WHERE t.id = v.id;

-- name: jobs_copy
-- Large batches without idempotency keys; postgres.py's _COPY_TYPES lists the
-- columns' types in this order.
COPY jobs (
    id, tenant_id, app_id, seq, kind, name, status, priority, input, labels, parent_id,
    attempt, max_attempts, run_at, timeout_s, retention_s, idempotency_key,
    created_at, updated_at
) FROM STDIN (FORMAT BINARY);

-- name: notify
-- Wakes the schema's idle workers once the transaction commits.
SELECT pg_notify(%(channel)s, '');

-- name: job_get
-- {cols} is postgres.py JOB_COLUMNS: Job's fields in order, read as tuples.
WITH clock AS (SELECT COALESCE(%(now)s::timestamptz, clock_timestamp()) AS now)
SELECT {cols}
FROM jobs j, clock
WHERE j.tenant_id = %(tenant_id)s AND j.id = %(id)s
  AND (j.expires_at IS NULL OR j.expires_at > clock.now);

-- name: job_list
-- {where} is a conjunction of the job_filter_* blocks below; parameters are positional.
-- The page's ids are chosen first, then their rows are read: the inner query
-- needs only (tenant_id, kind, status, id, expires_at), so with a kind and a
-- status it is an index-only scan of jobs_kind_status in id order, stopping
-- after one page. Asked for whole rows, the planner may instead walk the
-- primary key backwards and filter, which in a queue (the newest jobs are the
-- unfinished backlog) reads tens of thousands of rows for the first page.
-- {ids} is job_page_ids or job_page_ids_walked.
WITH clock AS (SELECT COALESCE(%s::timestamptz, clock_timestamp()) AS now)
SELECT {cols}
FROM jobs j
WHERE j.id IN ({ids})
ORDER BY j.id DESC;

-- name: job_records
-- job_list's page as the text of JSON records (store/records.py), comma-separated:
-- the native API's fields in its order, times as its RFC 3339 text, timeout_s
-- as a string (its exact float8 text: -0, NaN and Infinity included), one value
-- to fetch and parse. Written with || rather than json_build_object, which
-- looked up each value's output function, for twice the database's time; to_json
-- escapes the free text, the rest cannot need it (hex ids, tenant names
-- (checked), statuses, numbers, jsonb's own text).
WITH clock AS (SELECT COALESCE(%s::timestamptz, clock_timestamp()) AS now)
SELECT string_agg(
    '{"id":"' || j.id || '","tenant_id":"' || j.tenant_id
    || '","app_id":' || COALESCE(to_json(j.app_id)::text, 'null')
    || ',"seq":' || j.seq || ',"kind":' || to_json(j.kind)::text
    || ',"name":' || COALESCE(to_json(j.name)::text, 'null')
    || ',"status":"' || j.status || '","priority":' || j.priority
    || ',"input":' || j.input::text
    || ',"result":' || COALESCE(j.result::text, 'null')
    || ',"error":' || COALESCE(j.error::text, 'null')
    || ',"stats":' || COALESCE(j.stats::text, 'null')
    || ',"progress":' || COALESCE(j.progress::text, 'null')
    || ',"labels":' || COALESCE(j.labels::text, 'null')
    || ',"parent_id":' || COALESCE(to_json(j.parent_id)::text, 'null')
    || ',"attempt":' || j.attempt || ',"max_attempts":' || j.max_attempts
    || ',"run_at":' || COALESCE('"' || to_char(j.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"', 'null')
    || ',"timeout_s":' || COALESCE('"' || j.timeout_s::text || '"', 'null')
    || ',"retention_s":' || j.retention_s
    || ',"idempotency_key":' || COALESCE(to_json(j.idempotency_key)::text, 'null')
    || ',"created_at":' || COALESCE('"' || to_char(j.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"', 'null')
    || ',"started_at":' || COALESCE('"' || to_char(j.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"', 'null')
    || ',"finished_at":' || COALESCE('"' || to_char(j.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"', 'null')
    || ',"updated_at":' || COALESCE('"' || to_char(j.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"', 'null')
    || ',"expires_at":' || COALESCE('"' || to_char(j.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"', 'null')
    || '}', ',' ORDER BY j.id DESC)
FROM jobs j
WHERE j.id IN ({ids});

-- name: job_page_ids
SELECT j.id
FROM jobs j, clock
WHERE (j.expires_at IS NULL OR j.expires_at > clock.now) AND {where}
ORDER BY j.id DESC
LIMIT %s

-- name: job_page_ids_walked
-- Several kinds or finished statuses: one walk of jobs_kind_status per (kind,
-- status) pair, each stopping after a page, merged. PostgreSQL reads an index
-- in order only through `=`; with `= ANY(...)` it read every match and sorted.
-- The pairs come as two arrays (unnest zips them).
SELECT w.id
FROM unnest(%s::text[], %s::text[]) AS pair (kind, status), LATERAL (
    SELECT j.id
    FROM jobs j, clock
    WHERE (j.expires_at IS NULL OR j.expires_at > clock.now)
      AND j.kind = pair.kind AND j.status = pair.status AND {where}
    ORDER BY j.id DESC
    LIMIT %s) AS w
ORDER BY w.id DESC
LIMIT %s

-- name: job_filter_tenant
j.tenant_id = %s

-- name: job_filter_kind
-- One value is sent as `=`: PostgreSQL reads an index in order through `=`,
-- not through `= ANY(array)`, and a page needs that order.
j.kind = %s

-- name: job_filter_kinds
j.kind = ANY(%s::text[])

-- name: job_filter_status
j.status = %s

-- name: job_filter_statuses
j.status = ANY(%s::text[])

-- name: job_filter_finished
-- Added when every status asked for is a finished one: the WHERE clause of the
-- partial index jobs_kind_status (migration 0003), word for word, so that the
-- planner may use the index even in a plan made for any parameter values.
j.status IN ('succeeded', 'failed', 'canceled', 'skipped')

-- name: job_filter_parent
j.parent_id = %s

-- name: job_filter_app
j.app_id = %s

-- name: job_filter_labels
j.labels @> %s::jsonb

-- name: job_filter_created_gte
j.created_at >= %s::timestamptz

-- name: job_filter_created_lte
j.created_at <= %s::timestamptz

-- name: job_filter_finished_gte
j.finished_at >= %s::timestamptz

-- name: job_filter_finished_lte
j.finished_at <= %s::timestamptz

-- name: job_filter_stat_gte
-- A counter that was never written counts as 0. Takes the counter name twice.
COALESCE(CASE WHEN jsonb_typeof(j.stats -> %s::text) = 'number'
              THEN (j.stats ->> %s::text)::numeric END, 0) >= %s::numeric

-- name: job_filter_stat_lte
COALESCE(CASE WHEN jsonb_typeof(j.stats -> %s::text) = 'number'
              THEN (j.stats ->> %s::text)::numeric END, 0) <= %s::numeric

-- name: job_filter_before
j.id < %s

-- name: job_attempts
-- Columns named as the model's fields: rows become dataclasses as they are.
SELECT a.job_id, a.attempt, a.status, a.error, a.started_at, a.ended_at, a.worker_id
FROM job_attempts a
JOIN jobs j ON j.id = a.job_id
WHERE j.tenant_id = %(tenant_id)s AND a.job_id = %(job_id)s
ORDER BY a.attempt, a.n;


-- name: job_claim_many
-- Fair round robin in one walk of the queue: `busy` is every tenant with a due
-- job of the wanted kinds (one probe of the jobs_queue index each); each of
-- them offers an equal share of the batch, its best jobs among those that no
-- other worker's claim has locked (SKIP LOCKED, so that competing workers take
-- different jobs at once); the batch takes every tenant's first job before
-- anyone's second. A tenant with fewer jobs than its share leaves the batch
-- short rather than have the others walk their queue a second time.
-- The result always has one row: `candidates` is how many tenants had due
-- jobs, so that the caller can tell "queue empty" from "all taken".
-- {pool} is a number written into the text (postgres.py _claim_query): the
-- batch size rounded up to a power of two, at least 16. With the batch size
-- only a parameter, PostgreSQL planned the statement at every claim (0.4 ms
-- of a 0.8 ms claim of one job), as its generic plan looked dearer.
WITH clock AS (
    SELECT COALESCE(%(now)s::timestamptz, clock_timestamp()) AS now
), busy AS (
    -- A LATERAL probe rather than EXISTS, which the planner may turn into a
    -- hash join over every queued job instead of one index probe per tenant.
    SELECT t.id AS tenant_id
    FROM tenants t
    CROSS JOIN clock
    CROSS JOIN LATERAL (
        SELECT 1
        FROM jobs j
        WHERE j.tenant_id = t.id AND j.status = 'queued' AND j.run_at <= clock.now
          AND j.kind = ANY(%(kinds)b::text[])
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT 1
    ) probe
), share AS (
    -- The share is rounded up, so that the shares together fill the batch.
    -- The tenants go on as an array: unnested, the planner counts 10 of them,
    -- where it takes the (rarely analyzed) tenants table for about 1,000 rows
    -- and priced the plan above jit_above_cost (30 ms of JIT per claim).
    SELECT count(*) AS busy, array_agg(tenant_id) AS tenants,
           LEAST((%(limit)s + count(*) - 1) / NULLIF(count(*), 0), {pool}) AS n
    FROM busy
), locked AS (
    SELECT l.id, l.priority, l.run_at,
           row_number() OVER (PARTITION BY b.tenant_id
                              ORDER BY l.priority DESC, l.run_at, l.id) AS pos
    FROM share
    CROSS JOIN clock
    CROSS JOIN unnest(share.tenants) AS b(tenant_id)
    CROSS JOIN LATERAL (
        -- The outer LIMIT never cuts (share.n <= {pool}); it is there for the
        -- planner, which takes a LIMIT it cannot read for a tenth of the
        -- tenant's queued jobs (33,000 of 333,000) and priced the plan so
        -- high that it compiled it with JIT: 35 ms per claim, 550 ms before.
        SELECT *
        FROM (
            SELECT j.id, j.priority, j.run_at
            FROM jobs j
            WHERE j.tenant_id = b.tenant_id AND j.status = 'queued' AND j.run_at <= clock.now
              AND j.kind = ANY(%(kinds)b::text[])
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT share.n
            FOR UPDATE OF j SKIP LOCKED
        ) share_of_tenant
        LIMIT {pool}
    ) l
), chosen AS (
    SELECT id
    FROM (
        SELECT id, row_number() OVER (ORDER BY pos, priority DESC, run_at, id) AS n
        FROM locked
    ) ranked
    WHERE n <= %(limit)s
), claimed AS (
    UPDATE jobs j
    SET status = 'running',
        attempt = j.attempt + 1,
        started_at = clock.now,
        updated_at = clock.now,
        lease_expires_at = clock.now + %(lease_s)s::float8 * interval '1 second',
        worker_id = %(worker_id)s
    FROM clock
    -- By primary key alone. `locked` checked the status on the row versions it
    -- locked, which nobody can change before this statement ends; repeated
    -- here, or joined with `locked`, it let the planner read every queued job
    -- through jobs_queue (20,000 of them for a 256-job claim).
    WHERE j.id = ANY(ARRAY(SELECT id FROM chosen))
    -- Read by position in postgres.py (_claimed_job), after `candidates`. Status
    -- and worker are the claim's own; an empty labels object comes back NULL
    -- and the input as text, which Python decodes faster than psycopg's jsonb
    -- loader (a claim reads hundreds of rows on the worker's busiest thread).
    RETURNING j.id, j.tenant_id, j.app_id, j.seq, j.kind, j.name,
              j.priority, j.input::text AS input, j.result, j.error, j.stats, j.progress,
              NULLIF(j.labels, '{}'::jsonb) AS labels, j.parent_id, j.attempt, j.max_attempts,
              j.run_at, j.timeout_s, j.retention_s, j.idempotency_key, j.created_at,
              j.started_at, j.finished_at, j.updated_at, j.expires_at, j.lease_expires_at
)
SELECT (SELECT busy FROM share) AS candidates, claimed.*
FROM (SELECT 1) AS one
LEFT JOIN claimed ON true;

-- name: job_heartbeat_many
WITH clock AS (
    SELECT COALESCE(%(now)s::timestamptz, clock_timestamp()) AS now
), claims AS (
    SELECT * FROM unnest(%(ids)b::text[], %(attempts)b::integer[]) AS c (id, attempt)
), held AS (
    SELECT j.id
    FROM jobs j
    JOIN claims c ON c.id = j.id AND c.attempt = j.attempt
    WHERE j.status IN ('running', 'canceling')
    ORDER BY j.id
    FOR UPDATE OF j
), extended AS (
    UPDATE jobs j
    SET lease_expires_at = clock.now + %(lease_s)s::float8 * interval '1 second',
        updated_at = clock.now
    FROM held, clock
    WHERE j.id = held.id AND j.status IN ('running', 'canceling')
    RETURNING j.id, j.attempt, j.status
)
SELECT c.id, c.attempt, extended.status
FROM claims c
LEFT JOIN extended ON extended.id = c.id AND extended.attempt = c.attempt;

-- name: job_progress_many
-- Counters and progress are absolute values; NULL keeps the stored value.
WITH clock AS (
    SELECT clock_timestamp() AS now
), updates AS (
    SELECT *
    FROM unnest(%(ids)b::text[], %(attempts)b::integer[], %(stats)b::text[],
                %(progress)b::text[]) AS u (id, attempt, stats, progress)
), held AS (
    SELECT j.id
    FROM jobs j
    JOIN updates u ON u.id = j.id AND u.attempt = j.attempt
    WHERE j.status IN ('running', 'canceling')
    ORDER BY j.id
    FOR UPDATE OF j
)
UPDATE jobs j
SET stats = COALESCE(u.stats::jsonb, j.stats),
    progress = COALESCE(u.progress::jsonb, j.progress),
    updated_at = clock.now
FROM held
JOIN updates u ON u.id = held.id
CROSS JOIN clock
WHERE j.id = held.id AND j.attempt = u.attempt AND j.status IN ('running', 'canceling');

-- name: job_complete_many
-- One report per job id per statement (the caller splits repeats into rounds).
-- `fenced` is the fence: the reported attempt must be the job's current one and
-- the job must still be running or canceling. Reports that fail it are
-- recorded as 'refused' in the history of jobs that exist, and change nothing.
-- Linear in the batch whatever the planner estimates: each report locks its
-- job by primary key (LATERAL), and `fenced` keeps a row per report, so the
-- refused ones need no anti-join. Joining the reports with the held jobs
-- afterwards, or filtering on status in the lookup (jobs_lease), let the
-- planner, sure that about one job was running, compare every report with
-- every running job: 0.5 s for 1,000 reports on a table of 1,000,000 jobs.
WITH clock AS (
    SELECT COALESCE(%(now)s::timestamptz, clock_timestamp()) AS now
), fenced AS (
    -- The fence is checked on what the lock returns: the row's latest version.
    SELECT r.*, h.job_id, h.started_at, h.worker_id,
           h.attempt = r.attempt AND h.status IN ('running', 'canceling') AS held,
           CASE
               WHEN r.outcome IN ('succeeded', 'failed', 'canceled') THEN r.outcome
               -- a job asked to cancel is not run again
               WHEN h.status = 'canceling' THEN 'canceled'
               ELSE 'queued'
           END AS target
    FROM (
        -- in id order: the rows are locked in this order
        SELECT *
        FROM unnest(%(ids)b::text[], %(attempts)b::integer[], %(outcomes)b::text[],
                    %(results)b::text[], %(errors)b::text[], %(retry_ats)b::timestamptz[],
                    %(stats)b::text[], %(progress)b::text[])
            AS u (id, attempt, outcome, result, error, retry_at, stats, progress)
        ORDER BY id
    ) r
    LEFT JOIN LATERAL (
        SELECT j.id AS job_id, j.attempt, j.status, j.started_at, j.worker_id
        FROM jobs j
        WHERE j.id = r.id
        FOR UPDATE OF j
    ) h ON true
), ended AS (
    UPDATE jobs j
    SET status = h.target,
        result = CASE WHEN h.target = 'queued' THEN j.result ELSE h.result::jsonb END,
        error = CASE WHEN h.outcome = 'released' THEN j.error ELSE h.error::jsonb END,
        stats = COALESCE(h.stats::jsonb, j.stats),
        progress = COALESCE(h.progress::jsonb, j.progress),
        -- A release gives the try back without reusing the attempt number, which
        -- stays the fence: a duplicated release cannot free a later claim.
        max_attempts = CASE WHEN h.outcome = 'released' THEN j.max_attempts + 1
                            ELSE j.max_attempts END,
        run_at = CASE
                     WHEN h.target <> 'queued' THEN j.run_at
                     WHEN h.outcome = 'retry' THEN COALESCE(h.retry_at, clock.now)
                     ELSE clock.now
                 END,
        finished_at = CASE WHEN h.target = 'queued' THEN NULL ELSE clock.now END,
        expires_at = CASE
                         WHEN h.target = 'queued' THEN NULL
                         ELSE clock.now + j.retention_s * interval '1 second'
                     END,
        lease_expires_at = NULL,
        worker_id = CASE WHEN h.target = 'queued' THEN NULL ELSE j.worker_id END,
        updated_at = clock.now
    FROM fenced h
    CROSS JOIN clock
    -- By primary key: `fenced` checked attempt and status on the row versions
    -- it locked, which nobody can change before this statement ends.
    WHERE j.id = h.job_id AND h.held
    RETURNING j.id, j.status, j.run_at, h.attempt AS reported_attempt, h.outcome,
              h.error AS reported_error, h.started_at AS attempt_started_at,
              h.worker_id AS attempt_worker_id
), history AS (
    INSERT INTO job_attempts (job_id, attempt, status, error, started_at, ended_at, worker_id)
    SELECT e.id, e.reported_attempt, e.outcome, e.reported_error::jsonb, e.attempt_started_at,
           clock.now, e.attempt_worker_id
    FROM ended e, clock
    WHERE e.outcome IN ('failed', 'retry', 'canceled')
), refused AS (
    INSERT INTO job_attempts (job_id, attempt, status, error, started_at, ended_at, worker_id)
    SELECT r.id, r.attempt, 'refused',
           jsonb_build_object(
               'code', 'refused',
               'message', format('late %%s result of attempt %%s refused:'
                                 ' the attempt had lost its lease', r.outcome, r.attempt))
           || CASE
                  WHEN r.error IS NULL THEN '{}'::jsonb
                  ELSE jsonb_build_object('reported_error', r.error::jsonb)
              END,
           NULL, clock.now, NULL
    FROM fenced r
    CROSS JOIN clock
    WHERE r.job_id IS NOT NULL AND NOT r.held
), wake AS (
    SELECT pg_notify(%(channel)s, '')
    WHERE EXISTS (SELECT 1 FROM ended e, clock WHERE e.status = 'queued' AND e.run_at <= clock.now)
)
SELECT e.id, (SELECT count(*) FROM wake) AS woken
FROM ended e;

-- name: job_rescue_expired
-- Jobs whose worker stopped heartbeating. The guard (still running or
-- canceling, lease still expired) is re-checked on each row once it is locked,
-- so a job that finished meanwhile is left alone; SKIP LOCKED leaves rows that
-- a completion is writing right now to the next pass.
WITH clock AS (
    SELECT COALESCE(%(now)s::timestamptz, clock_timestamp()) AS now
), expired AS (
    SELECT j.id, j.worker_id,
           CASE
               WHEN j.status = 'canceling' THEN 'canceled'
               WHEN j.attempt >= j.max_attempts THEN 'failed'
               ELSE 'queued'
           END AS target
    FROM jobs j, clock
    WHERE j.status IN ('running', 'canceling') AND j.lease_expires_at < clock.now
    ORDER BY j.id
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), rescued AS (
    UPDATE jobs j
    SET status = x.target,
        error = jsonb_build_object(
            'code', 'lease_expired',
            'message', CASE x.target
                WHEN 'failed' THEN
                    'worker stopped heartbeating (lease expired) and no attempts are left'
                WHEN 'canceled' THEN
                    'worker stopped heartbeating (lease expired) while the job was being canceled'
                ELSE 'worker stopped heartbeating (lease expired); the job was queued again'
            END),
        -- exponential backoff with jitter: base * 2^(attempt - 1), capped, times 0.5..1
        run_at = CASE
                     WHEN x.target = 'queued' THEN
                         clock.now + LEAST(%(backoff_base_s)s::float8
                                           * power(2::float8, LEAST(GREATEST(j.attempt - 1, 0), 60)),
                                           %(backoff_max_s)s::float8)
                                     * (0.5 + random() / 2) * interval '1 second'
                     ELSE j.run_at
                 END,
        finished_at = CASE WHEN x.target = 'queued' THEN NULL ELSE clock.now END,
        expires_at = CASE
                         WHEN x.target = 'queued' THEN NULL
                         ELSE clock.now + j.retention_s * interval '1 second'
                     END,
        lease_expires_at = NULL,
        worker_id = CASE WHEN x.target = 'queued' THEN NULL ELSE j.worker_id END,
        updated_at = clock.now
    FROM expired x, clock
    WHERE j.id = x.id AND j.status IN ('running', 'canceling') AND j.lease_expires_at < clock.now
    RETURNING j.id, j.attempt, j.status, j.error, j.started_at, x.worker_id AS attempt_worker_id
), history AS (
    INSERT INTO job_attempts (job_id, attempt, status, error, started_at, ended_at, worker_id)
    SELECT r.id, r.attempt, 'lost', r.error, r.started_at, clock.now, r.attempt_worker_id
    FROM rescued r, clock
)
SELECT count(*) FILTER (WHERE status = 'queued') AS requeued,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'canceled') AS canceled
FROM rescued;

-- name: job_promote_scheduled
WITH clock AS (
    SELECT COALESCE(%(now)s::timestamptz, clock_timestamp()) AS now
), due AS (
    SELECT j.id
    FROM jobs j, clock
    WHERE j.status = 'scheduled' AND j.run_at <= clock.now
    ORDER BY j.id
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), promoted AS (
    UPDATE jobs j
    SET status = 'queued', updated_at = clock.now
    FROM due, clock
    WHERE j.id = due.id AND j.status = 'scheduled'
    RETURNING j.id
), wake AS (
    SELECT pg_notify(%(channel)s, '') WHERE EXISTS (SELECT 1 FROM promoted)
)
SELECT (SELECT count(*) FROM promoted) AS promoted, (SELECT count(*) FROM wake) AS woken;


-- name: job_set_status
-- A guarded move of one job. %(terminal)s: the target ends the job;
-- %(requeue)s: the target is queued (from a finished job this is a manual
-- retry, which first records the finished attempt in the history unless the
-- completion already did).
WITH clock AS (
    SELECT COALESCE(%(now)s::timestamptz, clock_timestamp()) AS now
), target AS (
    SELECT j.id, j.status AS was, j.attempt, j.error, j.started_at, j.finished_at, j.worker_id
    FROM jobs j, clock
    WHERE j.tenant_id = %(tenant_id)s AND j.id = %(id)s AND j.status = ANY(%(sources)b::text[])
      AND (%(target)s::text <> 'canceling' OR j.status = 'running')
      -- an expired job is gone for its users, even before it is purged
      AND (j.expires_at IS NULL OR j.expires_at > clock.now)
    FOR UPDATE OF j
), changed AS (
    UPDATE jobs j
    SET status = %(target)s::text,
        finished_at = CASE
                          WHEN %(terminal)s THEN clock.now
                          WHEN %(requeue)s THEN NULL
                          ELSE j.finished_at
                      END,
        expires_at = CASE
                         WHEN %(terminal)s THEN clock.now + j.retention_s * interval '1 second'
                         WHEN %(requeue)s THEN NULL
                         ELSE j.expires_at
                     END,
        lease_expires_at = CASE
                               WHEN %(terminal)s OR %(requeue)s THEN NULL
                               ELSE j.lease_expires_at
                           END,
        result = CASE WHEN %(requeue)s THEN NULL ELSE j.result END,
        error = CASE WHEN %(requeue)s THEN NULL ELSE j.error END,
        run_at = CASE WHEN %(requeue)s THEN clock.now ELSE j.run_at END,
        max_attempts = CASE
                           WHEN %(requeue)s THEN COALESCE(%(max_attempts)s::integer, j.max_attempts)
                           ELSE j.max_attempts
                       END,
        worker_id = CASE WHEN %(requeue)s THEN NULL ELSE j.worker_id END,
        updated_at = clock.now
    FROM target t, clock
    WHERE j.id = t.id
    RETURNING j.*
), history AS (
    INSERT INTO job_attempts (job_id, attempt, status, error, started_at, ended_at, worker_id)
    SELECT t.id, t.attempt, t.was, t.error, t.started_at, t.finished_at, t.worker_id
    FROM target t
    WHERE %(requeue)s AND t.attempt > 0
      AND t.was IN ('succeeded', 'failed', 'canceled', 'skipped')
      AND NOT EXISTS (
          SELECT 1 FROM job_attempts a
          WHERE a.job_id = t.id AND a.attempt = t.attempt AND a.status <> 'refused'
      )
), wake AS (
    SELECT pg_notify(%(channel)s, '') WHERE %(requeue)s AND EXISTS (SELECT 1 FROM changed)
)
SELECT c.*, (SELECT count(*) FROM wake) AS woken
FROM changed c;

-- name: job_delete
-- The job and its descendants (same tenant), with their rows in other tables.
WITH RECURSIVE tree AS (
    SELECT j.id FROM jobs j WHERE j.tenant_id = %(tenant_id)s AND j.id = %(id)s
    UNION
    SELECT c.id FROM jobs c JOIN tree ON c.parent_id = tree.id WHERE c.tenant_id = %(tenant_id)s
), doomed AS (
    SELECT j.id FROM jobs j WHERE j.id IN (SELECT id FROM tree) ORDER BY j.id FOR UPDATE
), errors_gone AS (
    DELETE FROM job_errors WHERE job_id IN (SELECT id FROM doomed)
), attempts_gone AS (
    DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM doomed)
), artifacts_gone AS (
    DELETE FROM artifacts WHERE job_id IN (SELECT id FROM doomed)
), jobs_gone AS (
    DELETE FROM jobs WHERE id IN (SELECT id FROM doomed) RETURNING id
)
SELECT id FROM jobs_gone ORDER BY id;

-- name: job_purge_expired
-- `due` finds the oldest expiries through the jobs_expires index; then they are
-- locked in id order. Asked in id order at once, the planner walked the whole
-- primary key index, every job of every tenant, at each maintenance round.
WITH clock AS (
    SELECT COALESCE(%(now)s::timestamptz, clock_timestamp()) AS now
), due AS (
    -- (SELECT now ...): a value the index scan can start from; joined with
    -- `clock`, the planner read the index from its start and filtered.
    SELECT j.id
    FROM jobs j
    WHERE j.expires_at <= (SELECT now FROM clock)
    ORDER BY j.expires_at
    LIMIT %(limit)s
), doomed AS (
    SELECT j.id
    FROM jobs j
    WHERE j.id = ANY(ARRAY(SELECT id FROM due)) AND j.expires_at <= (SELECT now FROM clock)
    ORDER BY j.id
    FOR UPDATE OF j SKIP LOCKED
), errors_gone AS (
    DELETE FROM job_errors WHERE job_id IN (SELECT id FROM doomed)
), attempts_gone AS (
    DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM doomed)
), artifacts_gone AS (
    DELETE FROM artifacts WHERE job_id IN (SELECT id FROM doomed)
), jobs_gone AS (
    DELETE FROM jobs WHERE id IN (SELECT id FROM doomed) RETURNING tenant_id, id
)
SELECT tenant_id, id FROM jobs_gone ORDER BY id;


-- name: job_errors_insert_many
WITH clock AS (SELECT clock_timestamp() AS now)
INSERT INTO job_errors (
    id, tenant_id, job_id, attempt, code, message, source, record, retry_data,
    resolved, retried, created_at
)
SELECT e.id, e.tenant_id, e.job_id, e.attempt, e.code, e.message, e.source,
       e.record::jsonb, e.retry_data::jsonb, e.resolved, e.retried,
       COALESCE(e.created_at, clock.now)
FROM unnest(
    %(ids)b::text[], %(tenant_ids)b::text[], %(job_ids)b::text[], %(attempts)b::integer[],
    %(codes)b::text[], %(messages)b::text[], %(sources)b::text[], %(records)b::text[],
    %(retry_data)b::text[], %(resolved)b::boolean[], %(retried)b::boolean[],
    %(created_ats)b::timestamptz[]
) AS e (
    id, tenant_id, job_id, attempt, code, message, source, record, retry_data,
    resolved, retried, created_at
)
CROSS JOIN clock;

-- name: job_errors_list
-- Columns named as the model's fields: rows become dataclasses as they are.
SELECT id, tenant_id, job_id, attempt, code, message, source, record, retry_data,
       resolved, retried, created_at
FROM job_errors
WHERE tenant_id = %(tenant_id)s AND job_id = %(job_id)s
  AND (%(after_id)s::text IS NULL OR id > %(after_id)s::text)
ORDER BY id
LIMIT %(limit)s;

-- name: job_errors_update
-- NULL flags stay as they are. Columns named as the model's fields.
UPDATE job_errors
SET resolved = COALESCE(%(resolved)s::boolean, resolved),
    retried = COALESCE(%(retried)s::boolean, retried)
WHERE tenant_id = %(tenant_id)s AND job_id = %(job_id)s AND id = ANY(%(ids)s::text[])
RETURNING id, tenant_id, job_id, attempt, code, message, source, record, retry_data,
          resolved, retried, created_at;

-- name: job_counts
-- Unexpired jobs per kind and status, of one tenant (or all when tenant_id is NULL).
WITH clock AS (SELECT COALESCE(%(now)s::timestamptz, clock_timestamp()) AS now)
SELECT j.kind, j.status, count(*) AS n
FROM jobs j, clock
WHERE (%(tenant_id)s::text IS NULL OR j.tenant_id = %(tenant_id)s::text)
  AND (j.expires_at IS NULL OR j.expires_at > clock.now)
GROUP BY j.kind, j.status;

-- name: artifact_put
INSERT INTO artifacts (tenant_id, job_id, name, blob_key, size, sha256, content_type, created_at)
VALUES (%(tenant_id)s, %(job_id)s, %(name)s, %(blob_key)s, %(size)s, %(sha256)s,
        %(content_type)s, COALESCE(%(created_at)s::timestamptz, clock_timestamp()))
ON CONFLICT (job_id, name) DO UPDATE
SET tenant_id = EXCLUDED.tenant_id,
    blob_key = EXCLUDED.blob_key,
    size = EXCLUDED.size,
    sha256 = EXCLUDED.sha256,
    content_type = EXCLUDED.content_type,
    created_at = EXCLUDED.created_at;

-- name: artifact_list
-- Columns named as the model's fields: rows become dataclasses as they are.
SELECT tenant_id, job_id, name, blob_key, size, sha256, content_type, created_at
FROM artifacts
WHERE tenant_id = %(tenant_id)s AND job_id = %(job_id)s
ORDER BY name;
