-- Per-user limits (docs/limits.md): each count is a range of one of these indexes.
-- A user's active jobs (not COMPLETED, FAILED or CANCELLED): the insert's count.
CREATE INDEX jobs_user_active ON jobs (user_id)
    WHERE status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED');
-- A user's fires (attempt-1 runs) by when they were made: the rolling-minute count.
CREATE INDEX runs_user_fired ON job_runs (user_id, triggered_at) WHERE attempt = 1;
