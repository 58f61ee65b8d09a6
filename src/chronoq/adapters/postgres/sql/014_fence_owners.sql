-- Issue 11: a fenced claim locks one row, not one per shard it owns.
--
-- Until now a fenced claim_due share-locked every fenced_shards row of its owner (128 of
-- 256 shards with two pickers, all 256 with one) in each transaction, and PostgreSQL
-- writes a lock record to the WAL for every row it locks: 26% of the WAL per job at light
-- load (docs/benchmarks.md). fence_owners holds one row per owner of the newest fence,
-- with its epoch. A fenced claim now share-locks only its owner's row, read together with
-- its shards (adapters/postgres/sql.LOCK_FENCE_OWNER); fence_shards locks every
-- fence_owners row FOR UPDATE before it rewrites the record, so it still waits for the
-- claims in flight, and a claim that waited re-reads its row and finds the new epoch: no
-- claim straddles two epochs. fence_shards also still locks the fenced_shards rows, for
-- claims of processes started before this migration during a rolling upgrade.
CREATE TABLE fence_owners (
    owner text   PRIMARY KEY,
    epoch bigint NOT NULL
);
INSERT INTO fence_owners (owner, epoch)
    SELECT owner, max(epoch) FROM fenced_shards GROUP BY owner;
