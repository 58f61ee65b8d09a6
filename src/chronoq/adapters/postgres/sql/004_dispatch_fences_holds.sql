-- Foundations rework: lost runs with an interruption budget, cancel at lease renewal,
-- store-owned fencing (Dispatch.fence_shards) and an at-least-once submission log.

-- Runs. interruptions: earlier attempts of the same fire that were INTERRUPTED (a lost
-- worker, not the job's failure); copied to the next attempt. cancel_requested: the
-- job was cancelled while this run was RUNNING; extend_leases reports it to the worker.
-- started_at is NULL from claim_runs until mark_started: a lost run that never started
-- provably never executed. INTERRUPTED ends only an attempt, so it stays out of
-- runs_one_terminal_per_fire (001), as RETRY_SCHEDULED does.
ALTER TABLE job_runs
    ADD COLUMN interruptions    integer NOT NULL DEFAULT 0,
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;

-- Store-owned fencing. The store never reads the coordination's tables (002): the
-- leader copies each assignment here with fence_shards(epoch, owners). (This replaces
-- the claim fence on shard_assignments that 002's comment describes; shard_assignments
-- is now the coordination's alone.)
--
-- fence_epoch: one row, the newest assignment epoch applied (0: none yet). A
--   fence_shards call applies only if its epoch is greater, so a deposed leader's late
--   write changes nothing; concurrent calls serialize on this row.
-- fenced_shards: shard -> owner under that epoch; every applied fence_shards rewrites
--   EVERY row with its epoch (and deletes shards it does not name), so all rows carry
--   the newest epoch.
--
-- A fenced claim_due first runs, in its own transaction and before it locks any job,
--     SELECT shard_id FROM fenced_shards WHERE owner = $owner AND epoch = $epoch
--      ORDER BY shard_id FOR SHARE
-- and claims only from those shards (none: fenced out). fence_shards locks every row
-- FOR UPDATE (shard order) before rewriting them, so it waits for claims in flight, and
-- a claim that waited on a fence re-checks the row and finds the new epoch: no claim
-- straddles two epochs. (chronoq.adapters.postgres.sql.LOCK_FENCED_SHARDS.)
CREATE TABLE fence_epoch (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch     bigint  NOT NULL
);
INSERT INTO fence_epoch (singleton, epoch) VALUES (true, 0);

CREATE TABLE fenced_shards (
    shard_id integer PRIMARY KEY,
    owner    text    NOT NULL,
    epoch    bigint  NOT NULL
);
CREATE INDEX fenced_shards_owner ON fenced_shards (owner, epoch, shard_id);

-- Submission log: append / read / ack, at least once. read() holds entries for a
-- consumer until held_until (the SERVER's clock); an entry not acknowledged by then is
-- delivered again. ack() deletes. Writers move entries into jobs themselves
-- (insert_jobs(if_absent=True)); the log no longer shares a transaction with jobs.
ALTER TABLE submissions
    ADD COLUMN held_by    text,
    ADD COLUMN held_until timestamptz;
