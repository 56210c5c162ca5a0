-- Filtered job lists (GET /v1/jobs?kind=...&status=...), newest first, in
-- keyset pages: the ids of a kind and status come from this index in id
-- order. With expires_at included, job_list's inner query (the page's ids) is
-- an index-only scan. One index for both filters, so that the queue's inserts
-- and status changes pay for one more index entry, not two.
CREATE INDEX jobs_kind_status ON jobs (tenant_id, kind, status, id) INCLUDE (expires_at);
