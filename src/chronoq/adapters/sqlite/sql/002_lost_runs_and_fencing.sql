-- Lost-run rule, cancel at lease renewal, and store-owned fencing (ports/dispatch.py).
-- (The migration runner splits on semicolons: none in comments.)

-- Earlier attempts of this fire that were INTERRUPTED by a lost worker (not job failures).
ALTER TABLE job_runs ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;
-- Set by cancel_job on RUNNING runs: extend_leases reports it, so the worker kills the run.
ALTER TABLE job_runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
-- started_at is NULL from claim_runs until mark_started. Runs left RUNNING by 001 had it set
-- at claim time: they count as started, the safe reading (they may have executed).
-- INTERRUPTED is not terminal, so runs_one_terminal_per_fire stays as it is.

-- The newest shard assignment the leader recorded with fence_shards: one row, its epoch
-- (0 until the first fence_shards, so any epoch >= 1 applies first) ...
CREATE TABLE shard_fence_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
);
INSERT INTO shard_fence_epoch (id, epoch) VALUES (1, 0);

-- ... and the owner of each shard under that epoch (a shard without a row has no owner).
-- A few hundred rows at most (one per shard): no index beyond the key.
CREATE TABLE shard_fence (
    shard_id INTEGER PRIMARY KEY,
    owner    TEXT    NOT NULL
);
