-- Filtered job lists (GET /v1/jobs?kind=...&status=...), newest first, in
-- keyset pages: the ids of a kind and a finished status come from this index
-- in id order, instead of a walk of jobs_tenant past every job that does not
-- match (in a queue, the whole unfinished backlog first).
--
-- Finished jobs only, so that the queue pays for it once per job (when it
-- finishes) and not at submit and claim as well: queued and running jobs are
-- the newest, found at once by the walk. job_list repeats this WHERE clause
-- when every status it asks for is a finished one: SQLite uses a partial index
-- only for a query that contains its WHERE terms. The condition is a chain of
-- ORs, not `status IN (...)`, which SQLite evaluated for each row written at a
-- cost close to that of a full index (measured with bench.api_index_cost).
CREATE INDEX jobs_kind_status ON jobs (tenant_id, kind, status, id)
    WHERE (status = 'succeeded' OR status = 'failed' OR status = 'canceled'
           OR status = 'skipped');
