-- Chronoq embedded schema. Instants are INTEGER microseconds since the Unix epoch (UTC).

CREATE TABLE jobs (
    seq             INTEGER PRIMARY KEY,          -- insertion order: the list cursor
    job_id          TEXT    NOT NULL UNIQUE,
    user_id         TEXT    NOT NULL,
    project_id      TEXT    NOT NULL,
    payload         TEXT,                         -- inline payload, or NULL when offloaded
    payload_ref     TEXT,                         -- blob key of an offloaded payload
    payload_size    INTEGER NOT NULL,
    cron_schedule   TEXT,
    timezone        TEXT,
    next_fire_at    INTEGER,                      -- the due index: NULL = no further fire
    shard_id        INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    max_retries     INTEGER NOT NULL,
    timeout_seconds REAL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- The seed's job_queue, as an index over jobs: one source of truth. Embedded mode has one
-- picker owning every shard, so no per-shard index (the PostgreSQL schema has one).
CREATE INDEX jobs_due ON jobs (next_fire_at) WHERE next_fire_at IS NOT NULL;
CREATE INDEX jobs_user ON jobs (user_id, seq);

CREATE TABLE job_runs (
    run_id        TEXT    PRIMARY KEY,
    job_id        TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    scheduled_for INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    triggered_at  INTEGER NOT NULL,
    available_at  INTEGER NOT NULL,
    started_at    INTEGER,
    completed_at  INTEGER,
    output        TEXT,
    exit_code     INTEGER,
    worker_id     TEXT,
    error_message TEXT,
    lease_owner   TEXT,
    lease_until   INTEGER,
    UNIQUE (job_id, scheduled_for, attempt)      -- also serves "runs of a job"
);

-- At most one terminal outcome per fire (DESIGN §4), enforced, not hoped for.
CREATE UNIQUE INDEX runs_one_terminal_per_fire ON job_runs (job_id, scheduled_for)
    WHERE status IN ('COMPLETED', 'FAILED', 'TIMED_OUT', 'CANCELLED', 'DEAD', 'SKIPPED');
CREATE INDEX runs_queued ON job_runs (available_at) WHERE status = 'QUEUED';
CREATE INDEX runs_running ON job_runs (lease_until) WHERE status = 'RUNNING';
