-- Issue 11: PostgreSQL's work per job. Two changes, measured together with
-- bench/drivers/lifecycle.py (fsync on, 20,000 jobs in batches of 1,000, insert -> fire ->
-- claim -> start -> complete): WAL per job 4,583 -> 3,429 bytes (-25%); docs/benchmarks.md.
--
-- 1. The per-user limits' indexes (010) are built only where a limit is set, by the store
--    itself (adapters/postgres/limit_indexes.py, CREATE INDEX CONCURRENTLY the first time
--    a count needs one). jobs_user_active's predicate names jobs.status, so while it
--    existed no status change of a job could be a heap-only (HOT) update: its claim and
--    its completion each wrote a new entry into every index of jobs (HOT share 51% -> 0%,
--    +440 bytes of WAL per job). runs_user_fired (attempt = 1) took a new entry at every
--    non-HOT update of a run (+300 bytes per job). With both limits at 0 -- the default --
--    nothing reads them.
-- 2. job_runs keeps room for HOT updates (fillfactor 70, as jobs in 012): the start of a
--    run sets only started_at, which no index names, so it can be heap-only when its page
--    has room (HOT share 0.6% -> 21% of run updates, -460 bytes per job). The status
--    changes still cannot be (status is in the partial indexes' predicates). Only pages
--    filled from now on keep the room; the heap grows about 1.4x.
DROP INDEX IF EXISTS jobs_user_active;
DROP INDEX IF EXISTS runs_user_fired;
ALTER TABLE job_runs SET (fillfactor = 70);
