-- Schedule policies, job control and the fire ledger (issue 9, DESIGN §5.8).
-- (The migration runner splits on semicolons: none in comments.)
-- Jobs written before this migration get the default policies: overlap skip, misfire
-- run_once, no deadline, no jitter, no start/end/max_fires, DST auto, and no fires counted yet.
ALTER TABLE jobs ADD COLUMN overlap TEXT NOT NULL DEFAULT 'skip';
ALTER TABLE jobs ADD COLUMN misfire TEXT NOT NULL DEFAULT 'run_once';
ALTER TABLE jobs ADD COLUMN catch_up_window_seconds REAL;
ALTER TABLE jobs ADD COLUMN start_deadline_seconds REAL;
ALTER TABLE jobs ADD COLUMN jitter_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN start_at INTEGER;
ALTER TABLE jobs ADD COLUMN end_at INTEGER;
ALTER TABLE jobs ADD COLUMN max_fires INTEGER;
-- How the schedule reads wall times that DST skips or repeats (auto: DESIGN §5.9).
ALTER TABLE jobs ADD COLUMN dst_gap TEXT NOT NULL DEFAULT 'auto';
ALTER TABLE jobs ADD COLUMN dst_repeat TEXT NOT NULL DEFAULT 'auto';
ALTER TABLE jobs ADD COLUMN fire_count INTEGER NOT NULL DEFAULT 0;
-- While PAUSED: the fire the job holds (next_fire_at is NULL meanwhile).
ALTER TABLE jobs ADD COLUMN paused_fire_at INTEGER;
-- Overlap bookkeeping of gated jobs (starts.gated), never shown: the run that is
-- RUNNING and started, and the run buffered behind it (QUEUED). Checked before use.
ALTER TABLE jobs ADD COLUMN running_run_id TEXT;
ALTER TABLE jobs ADD COLUMN buffered_run_id TEXT;
-- The submission's Idempotency-Key (unique per user while kept) and body fingerprint.
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
ALTER TABLE jobs ADD COLUMN request_hash TEXT;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Retention of keys (forget_idempotency_keys): oldest kept keys first.
CREATE INDEX jobs_idempotency_age ON jobs (created_at) WHERE idempotency_key IS NOT NULL;

-- A run created by trigger (a manual fire), not by the schedule: 0 or 1.
ALTER TABLE job_runs ADD COLUMN manual INTEGER NOT NULL DEFAULT 0;

-- The fire ledger's skips: a nominal fire, or a span of them (scheduled_for ..
-- last_scheduled_for), that has no run, or whose run was refused at its start (run_id).
-- fire_count NULL: a span too long to count. Inserts are ON CONFLICT DO NOTHING.
CREATE TABLE fire_skips (
    job_id             TEXT    NOT NULL,
    user_id            TEXT    NOT NULL,
    scheduled_for      INTEGER NOT NULL,
    last_scheduled_for INTEGER NOT NULL,
    fire_count         INTEGER,
    reason             TEXT    NOT NULL,
    run_id             TEXT,
    manual             INTEGER NOT NULL DEFAULT 0,
    recorded_at        INTEGER NOT NULL,
    PRIMARY KEY (job_id, scheduled_for)
) WITHOUT ROWID;
CREATE INDEX fire_skips_recorded ON fire_skips (recorded_at);

-- Skipped fires per reason so far (metrics counters): they only grow, purges included.
CREATE TABLE fire_skip_totals (
    reason TEXT    PRIMARY KEY,
    fires  INTEGER NOT NULL
)
