-- Filtered job lists (GET /v1/jobs?kind=...&status=...), newest first, in
-- keyset pages: the ids of a kind and a finished status come from this index
-- in id order. With expires_at included, job_list's inner query (the page's
-- ids) is an index-only scan.
--
-- Finished jobs only, so that the queue pays for it once per job (when it
-- finishes) and not at submit and claim as well: queued and running jobs are
-- the newest, found at once by a walk of jobs_tenant newest first. job_list
-- repeats this WHERE clause word for word when every status it asks for is a
-- finished one, which lets the planner use the index whatever the parameters.
CREATE INDEX jobs_kind_status ON jobs (tenant_id, kind, status, id) INCLUDE (expires_at)
    WHERE status IN ('succeeded', 'failed', 'canceled', 'skipped');
