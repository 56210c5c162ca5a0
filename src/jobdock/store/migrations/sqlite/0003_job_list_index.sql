-- Filtered job lists (GET /v1/jobs?kind=...&status=...), newest first, in
-- keyset pages: the ids of a kind and status come from this index in id
-- order, instead of a walk of jobs_tenant past every row that does not match.
-- One index for both filters, so that the queue's inserts and status changes
-- pay for one more index entry, not two.
CREATE INDEX jobs_kind_status ON jobs (tenant_id, kind, status, id);
