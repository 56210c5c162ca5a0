-- The insert trigger of 0004 checked, after every insert into jobs, that the
-- rows' tenants exist and locked them FOR KEY SHARE. Every insert of the store
-- already does both before writing a row: the one-tenant statement
-- (job_insert_one_tenant) bumps the tenant's next_seq, which locks its row and
-- inserts nothing when there is no such tenant; the other inserts and COPY lock
-- their tenants with tenants_lock and refuse a missing one. The trigger cost
-- about a tenth of a one-job submit. The other two guards of 0004 stay: a job's
-- tenant cannot be changed to a missing one, and a tenant with jobs cannot be
-- deleted or renamed.
DROP TRIGGER jobs_tenants_exist_insert ON jobs;
DROP FUNCTION jobs_tenants_exist();
