-- SQLite queries. Times are Unix seconds; :now is always given by the caller.
-- {cols} is replaced by the job column list, {kinds} by one placeholder per kind.
--
-- Queue writes (claim, heartbeat, progress, completion) hold the database's
-- write lock, which the other worker processes wait for. Python's sqlite3
-- gives up the GIL at every row it steps through, and taking it back can wait
-- for the worker's other threads (up to the 5 ms switch interval each time),
-- so these statements step once whatever the batch size: batches come in as
-- one JSON array (json_each), answers go out as one (json_group_array), and
-- rows are read back after the commit.

-- name: tenant_insert
INSERT INTO tenants (id, created_at, retention_s) VALUES (?, ?, ?);

-- name: tenant_get
SELECT id, created_at, retention_s FROM tenants WHERE id = ?;

-- name: tenant_list
SELECT id, created_at, retention_s FROM tenants ORDER BY id;

-- name: tenant_take_seq
-- Reserve `n` sequence numbers; returns the last one.
UPDATE tenants SET next_seq = next_seq + ? WHERE id = ? RETURNING next_seq;

-- name: job_insert
INSERT INTO jobs (id, tenant_id, app_id, seq, kind, name, status, priority, input, labels,
                  parent_id, max_attempts, run_at, timeout_s, retention_s, idempotency_key,
                  created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: job_by_idempotency_key
SELECT {cols} FROM jobs WHERE tenant_id = ? AND idempotency_key = ?;

-- name: job_get
SELECT {cols} FROM jobs
WHERE id = ? AND tenant_id = ? AND (expires_at IS NULL OR expires_at > ?);

-- name: job_records
-- A page of job_list ({page}: its statement and parameters) as one JSON array
-- of records (store/records.py), in one step: the API's fields in its order,
-- times as RFC 3339 text written as Python's datetime.fromtimestamp reads them,
-- JSON columns embedded (json() raises "malformed JSON" for what only Python
-- reads, such as NaN: the store then takes the rows through Job). SQLite
-- computes an expression wherever it is written, so each time is split once
-- in `page` and rounded once in `micros`. timeout_s is a string of its exact
-- decimal, when it is a whole number of microseconds; `inexact` counts the
-- others (SQLite's own float text is not exact): the store then takes Job's way.
WITH page AS MATERIALIZED (
    SELECT *, {split},
           CASE WHEN timeout_s >= 0 AND timeout_s < 1e12
                 AND round(timeout_s * 1000000) / 1000000.0 = timeout_s
                THEN CAST(round(timeout_s * 1000000) AS INTEGER) END AS timeout_us
    FROM ({page})),
micros AS MATERIALIZED (SELECT *, {micros} FROM page)
SELECT json_group_array(json_object(
           'id', id, 'tenant_id', tenant_id, 'app_id', app_id, 'seq', seq, 'kind', kind,
           'name', name, 'status', status, 'priority', priority, 'input', json(input),
           'result', json(result), 'error', json(error), 'stats', json(stats),
           'progress', json(progress), 'labels', json(labels), 'parent_id', parent_id,
           'attempt', attempt, 'max_attempts', max_attempts, 'run_at', {text:run_at},
           'timeout_s', CASE WHEN timeout_us IS NOT NULL THEN
                        printf('%d.%06d', timeout_us / 1000000, timeout_us % 1000000) END,
           'retention_s', retention_s, 'idempotency_key', idempotency_key,
           'created_at', {text:created_at}, 'started_at', {text:started_at},
           'finished_at', {text:finished_at}, 'updated_at', {text:updated_at},
           'expires_at', {text:expires_at})),
       sum(timeout_s IS NOT NULL AND timeout_us IS NULL) AS inexact
FROM micros;

-- name: record_time_split
-- {t} is a time column (Unix seconds). Python's datetime.fromtimestamp takes
-- the whole seconds toward zero and rounds the fraction's microseconds half to
-- even: here the seconds, and the fraction's microseconds plus a half away from
-- zero, to be cut toward zero in record_time_micros.
CAST({t} AS INTEGER) AS {t}_s,
({t} - CAST({t} AS INTEGER)) * 1000000.0 + CASE WHEN {t} < 0 THEN -0.5 ELSE 0.5 END AS {t}_h

-- name: record_time_micros
-- The time in whole microseconds. Cutting {t}_h rounds half away from zero; a
-- half that landed on an odd number goes back one, to the even one.
{t}_s * 1000000 + CAST({t}_h AS INTEGER)
    - (CAST({t}_h AS INTEGER) = {t}_h AND CAST({t}_h AS INTEGER) % 2 = 1)
    + (CAST({t}_h AS INTEGER) = {t}_h AND CAST({t}_h AS INTEGER) % 2 = -1) AS {t}_us

-- name: record_time_text
-- {t}_us as RFC 3339 text in UTC with microseconds (floor division, so that a
-- time before 1970 is right too); NULL stays NULL.
strftime('%Y-%m-%dT%H:%M:%S', ({t}_us - ({t}_us % 1000000 + 1000000) % 1000000) / 1000000,
         'unixepoch') || printf('.%06dZ', ({t}_us % 1000000 + 1000000) % 1000000)

-- name: job_any_due
-- A cheap read before the claim's write transaction: is there anything to claim?
SELECT 1 FROM jobs WHERE status = 'queued' AND run_at <= ? LIMIT 1;

-- name: job_claim_ids
-- The ids a claim takes, best first, as one JSON array. Round robin across
-- tenants: each tenant's best `limit` due jobs are ranked within the tenant,
-- then the best ranks of all tenants are taken first, so a tenant with a deep
-- queue cannot push another tenant's jobs back.
SELECT json_group_array(id) FROM (
    SELECT id FROM (
        SELECT j.id, j.priority, j.run_at,
               row_number() OVER (PARTITION BY j.tenant_id
                                  ORDER BY j.priority DESC, j.run_at, j.id) AS rank
        FROM tenants t
        JOIN jobs j ON j.id IN (
            SELECT q.id FROM jobs q
            WHERE q.tenant_id = t.id AND q.status = 'queued' AND q.run_at <= :now
              AND q.kind IN ({kinds})
            ORDER BY q.priority DESC, q.run_at, q.id
            LIMIT :limit)
    )
    ORDER BY rank, priority DESC, run_at, id
    LIMIT :limit);

-- name: job_claim
-- Claims the jobs of :ids (job_claim_ids, in the same transaction).
UPDATE jobs
SET status = 'running', attempt = attempt + 1, started_at = :now, updated_at = :now,
    lease_expires_at = :lease_until, worker_id = :worker_id
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'queued';

-- name: job_claimed
-- The claimed jobs, read after the claim commits. {claimed} is the column list
-- of sqlite.py CLAIMED_COLUMNS: what the claim set is the same for the whole
-- batch and is not read back.
SELECT {claimed} FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: job_held
-- Of :claims ([[id, attempt], ...]), those still held (the attempt is the
-- job's current one, running or canceling), with their status.
SELECT json_group_array(json_array(jobs.id, jobs.status))
FROM json_each(:claims) AS c
JOIN jobs ON jobs.id = c.value ->> 0
WHERE jobs.attempt = c.value ->> 1 AND jobs.status IN ('running', 'canceling');

-- name: job_heartbeat
WITH c AS (
    SELECT value ->> 0 AS id, value ->> 1 AS attempt FROM json_each(:claims)
)
UPDATE jobs SET lease_expires_at = :lease_until, updated_at = :now
FROM c
WHERE jobs.id = c.id AND jobs.attempt = c.attempt AND jobs.status IN ('running', 'canceling');

-- name: job_progress
-- :updates is [[id, attempt, stats, progress], ...], the last two as JSON text or null.
WITH u AS (
    SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS stats,
           value ->> 3 AS progress
    FROM json_each(:updates)
)
UPDATE jobs
SET stats = coalesce(u.stats, jobs.stats), progress = coalesce(u.progress, jobs.progress),
    updated_at = :now
FROM u
WHERE jobs.id = u.id AND jobs.attempt = u.attempt AND jobs.status IN ('running', 'canceling');

-- name: job_reports_accepted
-- Completions come as one JSON array (:reports) with one report per job: [id,
-- attempt, outcome, result, error, stats, progress, run_at], the JSON values as
-- JSON text (or null) so that `->>` gives back the text to store. A report is
-- accepted when its attempt is the job's current one, still running or
-- canceling: the fence that the job_*_many statements below repeat. Asked, with
-- the history below, before those statements change the jobs.
SELECT json_group_array(jobs.id)
FROM json_each(:reports) AS r
JOIN jobs ON jobs.id = r.value ->> 0
WHERE jobs.attempt = r.value ->> 1 AND jobs.status IN ('running', 'canceling');

-- name: attempt_insert_endings
-- The history rows of accepted reports that end otherwise than in success.
INSERT INTO job_attempts (job_id, attempt, status, error, started_at, ended_at, worker_id)
SELECT jobs.id, jobs.attempt, r.value ->> 2, r.value ->> 4, jobs.started_at, :now,
       jobs.worker_id
FROM json_each(:reports) AS r
JOIN jobs ON jobs.id = r.value ->> 0
WHERE jobs.attempt = r.value ->> 1 AND jobs.status IN ('running', 'canceling')
  AND r.value ->> 2 IN ('failed', 'retry', 'canceled');

-- name: job_finish_many
-- End attempts: the reports of :reports (as in job_reports_accepted) that
-- succeeded, failed or were canceled.
WITH r AS (
    SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS outcome,
           value ->> 3 AS result, value ->> 4 AS error, value ->> 5 AS stats,
           value ->> 6 AS progress
    FROM json_each(:reports)
    WHERE value ->> 2 IN ('succeeded', 'failed', 'canceled')
)
UPDATE jobs
SET status = r.outcome, result = r.result, error = r.error,
    stats = coalesce(r.stats, jobs.stats), progress = coalesce(r.progress, jobs.progress),
    finished_at = :now, updated_at = :now, expires_at = :now + jobs.retention_s,
    lease_expires_at = NULL
FROM r
WHERE jobs.id = r.id AND jobs.attempt = r.attempt AND jobs.status IN ('running', 'canceling');

-- name: job_retry_later_many
-- Failed attempts with attempts left (the 'retry' reports of :reports, as in
-- job_reports_accepted); a job asked to cancel is canceled instead.
WITH r AS (
    SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 4 AS error,
           value ->> 5 AS stats, value ->> 6 AS progress, value ->> 7 AS run_at
    FROM json_each(:reports)
    WHERE value ->> 2 = 'retry'
)
UPDATE jobs
SET status = CASE jobs.status WHEN 'canceling' THEN 'canceled' ELSE 'queued' END,
    run_at = r.run_at, error = r.error, stats = coalesce(r.stats, jobs.stats),
    progress = coalesce(r.progress, jobs.progress), updated_at = :now, lease_expires_at = NULL,
    finished_at = CASE jobs.status WHEN 'canceling' THEN :now END,
    expires_at = CASE jobs.status WHEN 'canceling' THEN :now + jobs.retention_s END
FROM r
WHERE jobs.id = r.id AND jobs.attempt = r.attempt AND jobs.status IN ('running', 'canceling');

-- name: job_release_many
-- A worker gives back attempts it did not run (shutdown); a job asked to
-- cancel meanwhile is canceled rather than queued again. The try is given back
-- through max_attempts: the attempt number never goes down, as it is the fence
-- (a duplicated release must not free a later claim of the same job).
-- The 'released' reports of :reports, as in job_reports_accepted.
WITH r AS (
    SELECT value ->> 0 AS id, value ->> 1 AS attempt
    FROM json_each(:reports)
    WHERE value ->> 2 = 'released'
)
UPDATE jobs
SET status = CASE jobs.status WHEN 'canceling' THEN 'canceled' ELSE 'queued' END,
    max_attempts = jobs.max_attempts + 1,
    run_at = CASE jobs.status WHEN 'canceling' THEN jobs.run_at ELSE :now END,
    finished_at = CASE jobs.status WHEN 'canceling' THEN :now END,
    expires_at = CASE jobs.status WHEN 'canceling' THEN :now + jobs.retention_s END,
    updated_at = :now, lease_expires_at = NULL,
    worker_id = CASE jobs.status WHEN 'canceling' THEN jobs.worker_id END
FROM r
WHERE jobs.id = r.id AND jobs.attempt = r.attempt AND jobs.status IN ('running', 'canceling');

-- name: attempt_insert
INSERT INTO job_attempts (job_id, attempt, status, error, started_at, ended_at, worker_id)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: attempt_insert_unless_recorded
-- A manual retry records the attempt it ends, unless the job never ran or a
-- completion or the rescuer already recorded how that attempt ended ('refused'
-- rows do not count).
INSERT INTO job_attempts (job_id, attempt, status, error, started_at, ended_at, worker_id)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
WHERE ?2 > 0 AND NOT EXISTS (SELECT 1 FROM job_attempts
                             WHERE job_id = ?1 AND attempt = ?2 AND status <> 'refused');

-- name: attempt_insert_if_job
INSERT INTO job_attempts (job_id, attempt, status, error, started_at, ended_at, worker_id)
SELECT id, ?, ?, ?, NULL, ?, NULL FROM jobs WHERE id = ?;

-- name: attempt_list
SELECT job_id, attempt, status, error, started_at, ended_at, worker_id
FROM job_attempts WHERE job_id = ? ORDER BY attempt, rowid;

-- name: job_expired_leases
SELECT id, attempt, max_attempts, status, started_at, worker_id FROM jobs
WHERE status IN ('running', 'canceling') AND lease_expires_at < ?
ORDER BY id LIMIT ?;

-- name: job_rescue
-- Guarded: only if the lease is still expired at the moment of the write.
UPDATE jobs
SET status = :status, run_at = coalesce(:run_at, run_at), error = :error, updated_at = :now,
    lease_expires_at = NULL, finished_at = :finished_at,
    expires_at = :finished_at + retention_s
WHERE id = :id AND attempt = :attempt AND status IN ('running', 'canceling')
  AND lease_expires_at < :now;

-- name: job_promote_scheduled
UPDATE jobs SET status = 'queued', updated_at = :now
WHERE id IN (SELECT id FROM jobs WHERE status = 'scheduled' AND run_at <= :now LIMIT :limit);

-- name: job_descendants
WITH RECURSIVE tree(id) AS (
    SELECT id FROM jobs WHERE id = ? AND tenant_id = ?
    UNION ALL
    SELECT j.id FROM jobs j JOIN tree ON j.parent_id = tree.id
)
SELECT id FROM tree;

-- name: job_expired
SELECT tenant_id, id FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?
ORDER BY expires_at LIMIT ?;

-- name: job_error_insert
INSERT INTO job_errors (id, tenant_id, job_id, attempt, code, message, source, record,
                        retry_data, resolved, retried, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: job_errors_list
SELECT id, tenant_id, job_id, attempt, code, message, source, record, retry_data,
       resolved, retried, created_at
FROM job_errors WHERE tenant_id = ? AND job_id = ? AND id > ? ORDER BY id LIMIT ?;

-- name: job_errors_update
-- {ids} is replaced by one placeholder per error id.
UPDATE job_errors
SET resolved = coalesce(:resolved, resolved), retried = coalesce(:retried, retried)
WHERE tenant_id = :tenant_id AND job_id = :job_id AND id IN ({ids})
RETURNING id, tenant_id, job_id, attempt, code, message, source, record, retry_data,
          resolved, retried, created_at;

-- name: job_counts
-- Unexpired jobs per kind and status, of one tenant (or all when :tenant_id is NULL).
SELECT kind, status, count(*) FROM jobs
WHERE (:tenant_id IS NULL OR tenant_id = :tenant_id) AND (expires_at IS NULL OR expires_at > :now)
GROUP BY kind, status;

-- name: artifact_upsert
INSERT INTO artifacts (tenant_id, job_id, name, blob_key, size, sha256, content_type, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_id, name) DO UPDATE SET
    blob_key = excluded.blob_key, size = excluded.size, sha256 = excluded.sha256,
    content_type = excluded.content_type, created_at = excluded.created_at;

-- name: artifact_list
SELECT tenant_id, job_id, name, blob_key, size, sha256, content_type, created_at
FROM artifacts WHERE tenant_id = ? AND job_id = ? ORDER BY name;

-- name: lock_take
-- Take or renew a named lease; returns a row only for the holder.
INSERT INTO locks (name, holder, expires_at) VALUES (?1, ?2, ?3)
ON CONFLICT (name) DO UPDATE SET holder = ?2, expires_at = ?3
WHERE locks.holder = ?2 OR locks.expires_at < ?4
RETURNING holder;

-- name: lock_release
DELETE FROM locks WHERE name = ? AND holder = ?;
