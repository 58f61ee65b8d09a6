-- Queues and priorities (issue 9 item 8, docs/queues.md). A job names its queue and
-- priority, and each run copies them when it is created (a fire claimed, a trigger, a retry),
-- so a change to the job moves its later runs only. Rows written before this migration
-- are in queue 'default' at priority 0: constant defaults, so adding the columns
-- rewrites no table.
ALTER TABLE jobs
    ADD COLUMN priority integer NOT NULL DEFAULT 0,
    ADD COLUMN queue    text    NOT NULL DEFAULT 'default';
ALTER TABLE job_runs
    ADD COLUMN priority integer NOT NULL DEFAULT 0,
    ADD COLUMN queue    text    NOT NULL DEFAULT 'default';
-- claim_runs over every queue: higher priority first, then the oldest available_at.
CREATE INDEX runs_queued_priority ON job_runs (priority DESC, available_at)
    WHERE status = 'QUEUED';
-- claim_runs from chosen queues: the same order within each queue.
CREATE INDEX runs_queued_queue ON job_runs (queue, priority DESC, available_at)
    WHERE status = 'QUEUED';
