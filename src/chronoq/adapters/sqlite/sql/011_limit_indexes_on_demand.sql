-- The per-user limits' indexes (008) are made where a limit is used, not always: the
-- count that needs one creates it first (adapters/sqlite/limits.py, CREATE INDEX IF NOT
-- EXISTS in the count's own transaction: a one-time pause of the writer while it is
-- built). With both limits at 0 -- the default -- nothing read them, yet every job status
-- change updated jobs_user_active and every new run added to runs_user_fired: measured on
-- the embedded batch path (python -m bench --scenarios batch --jobs 20000, 3 alternating
-- pairs), bytes written per job 4,152 -> 3,711 (-10.6%), server CPU per job x0.954, jobs/s
-- x1.041 (docs/benchmarks.md). PostgreSQL does the same (its 013).
DROP INDEX IF EXISTS jobs_user_active;
DROP INDEX IF EXISTS runs_user_fired;
