-- Schedule policies, job control and the fire ledger (issue 9, DESIGN §5.8).
-- Jobs written before this migration get the default policies: overlap skip, misfire
-- run_once, no deadline, no jitter, no start/end/max_fires, and no fires counted yet.
-- Every added column is NULL or has a constant default: adding them rewrites no table.
-- Column order is storage order: the fixed-width ones first, right after updated_at (an
-- 8-byte column), so they need no alignment padding; NULLs take no space at all.
ALTER TABLE jobs
    ADD COLUMN jitter_seconds          double precision NOT NULL DEFAULT 0,
    -- Nominal fires claimed so far (runs and skips; max_fires).
    ADD COLUMN fire_count              bigint           NOT NULL DEFAULT 0,
    ADD COLUMN overlap                 text             NOT NULL DEFAULT 'skip',
    ADD COLUMN misfire                 text             NOT NULL DEFAULT 'run_once',
    -- DST policy (schedules.DstGap / DstRepeat): how the schedule reads DST days.
    ADD COLUMN dst_gap                 text             NOT NULL DEFAULT 'auto',
    ADD COLUMN dst_repeat              text             NOT NULL DEFAULT 'auto',
    ADD COLUMN catch_up_window_seconds double precision,
    ADD COLUMN start_deadline_seconds  double precision,
    ADD COLUMN start_at                timestamptz,
    ADD COLUMN end_at                  timestamptz,
    ADD COLUMN max_fires               integer,
    -- While PAUSED: the fire the job holds (next_fire_at is NULL meanwhile).
    ADD COLUMN paused_fire_at          timestamptz,
    -- Overlap bookkeeping of gated jobs (starts.gated), never shown: the run that is
    -- RUNNING and started, and the run buffered behind it (QUEUED). Checked before use.
    ADD COLUMN running_run_id          uuid,
    ADD COLUMN buffered_run_id         uuid,
    -- The submission's Idempotency-Key (unique per user while kept) and body fingerprint.
    ADD COLUMN idempotency_key         text,
    ADD COLUMN request_hash            text;

CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Retention of keys (forget_idempotency_keys): oldest kept keys first.
CREATE INDEX jobs_idempotency_age ON jobs (created_at) WHERE idempotency_key IS NOT NULL;

-- A run created by trigger (a manual fire), not by the schedule.
ALTER TABLE job_runs ADD COLUMN manual boolean NOT NULL DEFAULT false;

-- The fire ledger's skips: a nominal fire, or a span of them (scheduled_for ..
-- last_scheduled_for), that has no run, or whose run was refused at its start (run_id).
-- fire_count NULL: a span too long to count. Inserts are ON CONFLICT DO NOTHING.
-- The primary key serves list_fires (per job, by time) and purge_job.
CREATE TABLE fire_skips (
    job_id             uuid        NOT NULL,
    user_id            text        NOT NULL,
    scheduled_for      timestamptz NOT NULL,
    last_scheduled_for timestamptz NOT NULL,
    fire_count         bigint,
    reason             text        NOT NULL,
    run_id             uuid,
    manual             boolean     NOT NULL DEFAULT false,
    recorded_at        timestamptz NOT NULL,
    PRIMARY KEY (job_id, scheduled_for)
);
-- Retention (purge_finished): oldest first.
CREATE INDEX fire_skips_recorded ON fire_skips (recorded_at);

-- Skipped fires per reason so far (metrics counters): they only grow, purges included.
-- Written last in every transaction that writes them (after jobs and runs), rows in
-- reason order, so these hot rows never close a lock cycle.
CREATE TABLE fire_skip_totals (
    reason text   PRIMARY KEY,
    fires  bigint NOT NULL
);
