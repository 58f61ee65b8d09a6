-- Per-user limits (docs/limits.md): each count is a range of one of these indexes.
-- A user's active jobs (not COMPLETED, FAILED or CANCELLED): the insert's count.
-- The predicate is written with <> and AND, not NOT IN: SQLite evaluates it on every
-- write to jobs.status and would build the IN list's table each time (see 010).
CREATE INDEX jobs_user_active ON jobs (user_id)
    WHERE status <> 'COMPLETED' AND status <> 'FAILED' AND status <> 'CANCELLED';
-- A user's fires (attempt-1 runs) by when they were made: the rolling-minute count.
CREATE INDEX runs_user_fired ON job_runs (user_id, triggered_at) WHERE attempt = 1;
