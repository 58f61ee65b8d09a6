-- Chronoq distributed schema (PostgreSQL). Instants are timestamptz (microseconds, UTC);
-- ids are uuid. The same tables as the embedded SQLite schema, keyed by shard for the
-- pickers so that a sharded engine (Citus, a Postgres-compatible distributed SQL) fits.

CREATE TABLE jobs (
    job_id          uuid             PRIMARY KEY,
    seq             bigint           GENERATED ALWAYS AS IDENTITY,  -- insertion order: the list cursor
    user_id         text             NOT NULL,
    project_id      text             NOT NULL,
    payload         text,                                           -- inline, or NULL when offloaded
    payload_ref     text,                                           -- blob key of an offloaded payload
    payload_size    integer          NOT NULL,
    cron_schedule   text,
    timezone        text,
    next_fire_at    timestamptz,                                    -- the due index: NULL = no further fire
    shard_id        integer          NOT NULL,
    status          text             NOT NULL,
    max_retries     integer          NOT NULL,
    timeout_seconds double precision,
    created_at      timestamptz      NOT NULL,
    updated_at      timestamptz      NOT NULL
);

-- The seed's job_queue, as indexes over jobs: one source of truth.
CREATE INDEX jobs_due ON jobs (next_fire_at) WHERE next_fire_at IS NOT NULL;
CREATE INDEX jobs_shard_due ON jobs (shard_id, next_fire_at) WHERE next_fire_at IS NOT NULL;
CREATE INDEX jobs_user ON jobs (user_id, seq);

CREATE TABLE job_runs (
    run_id        uuid        PRIMARY KEY,
    job_id        uuid        NOT NULL,
    user_id       text        NOT NULL,
    scheduled_for timestamptz NOT NULL,
    attempt       integer     NOT NULL,
    status        text        NOT NULL,
    triggered_at  timestamptz NOT NULL,
    available_at  timestamptz NOT NULL,
    started_at    timestamptz,
    completed_at  timestamptz,
    output        text,
    exit_code     integer,
    worker_id     text,
    error_message text,
    lease_owner   text,
    lease_until   timestamptz,
    -- A fire is (job_id, scheduled_for); this index also serves the per-job run listing.
    CONSTRAINT job_runs_fire_attempt UNIQUE (job_id, scheduled_for, attempt)
);

-- At most one terminal outcome per fire (DESIGN §4), enforced, not hoped for.
CREATE UNIQUE INDEX runs_one_terminal_per_fire ON job_runs (job_id, scheduled_for)
    WHERE status IN ('COMPLETED', 'FAILED', 'TIMED_OUT', 'CANCELLED', 'DEAD', 'SKIPPED');
CREATE INDEX runs_queued ON job_runs (available_at) WHERE status = 'QUEUED';
CREATE INDEX runs_running ON job_runs (lease_until) WHERE status = 'RUNNING';
