-- Chronoq coordination (PostgresCoordination): the leader lease, membership and the
-- shard assignment. Every expiry is decided by THIS server's clock (now() /
-- clock_timestamp()), never by a caller's.

-- The leader lease, one row per lease name (the coordinator uses 'chronoq').
-- holder:     the candidate that holds it; NULL after a graceful resign.
-- epoch:      the fencing token; +1 at every new term (another holder, or the same
--             holder after its lease had lapsed); kept on renewal of a live lease.
--             The row is never deleted, so an epoch is never handed out twice.
-- expires_at: the lease is live while expires_at > now().
CREATE TABLE leader_lease (
    name       text        PRIMARY KEY,
    holder     text,
    epoch      bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Live nodes (pickers, workers, api nodes). A member is alive while
-- heartbeat_at > now() - ttl; started_at is set by the first heartbeat only.
CREATE TABLE members (
    member_id    text        PRIMARY KEY,
    role         text        NOT NULL,
    host         text        NOT NULL DEFAULT '',
    pid          integer     NOT NULL DEFAULT 0,
    info         jsonb       NOT NULL DEFAULT '{}',
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
);
CREATE INDEX members_role_heartbeat ON members (role, heartbeat_at);

-- The assignment epoch counter: exactly one row. assign_shards bumps it in the same
-- transaction as it rewrites shard_assignments, so assignment epochs only grow,
-- across leaders, and are never reused.
CREATE TABLE assignment_epoch (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch     bigint  NOT NULL
);
INSERT INTO assignment_epoch (singleton, epoch) VALUES (true, 0);

-- The current shard -> picker assignment. Every assign_shards rewrites EVERY row
-- with the new assignment epoch (and deletes shards it no longer names), so all rows
-- always carry the same epoch: the latest one.
--
-- FENCING for Store.claim_due(owner, epoch): inside the claim transaction, BEFORE
-- locking any jobs row, lock the caller's assignment rows in shard order:
--
--     SELECT shard_id FROM shard_assignments
--      WHERE owner = $owner AND epoch = $epoch
--      ORDER BY shard_id FOR SHARE
--
-- and claim only jobs whose shard_id is among the returned ids (intersected with
-- ClaimDueParams.shards when given). An empty result means the picker was fenced out:
-- claim nothing. FOR SHARE makes a concurrent assign_shards (which updates these rows)
-- wait for the claim to commit, and a claim that waited on an assign re-checks the
-- row and finds the new epoch: a picker can never claim from a shard it no longer
-- owns. (chronoq.adapters.postgres.coordination.LOCK_OWNED_SHARDS is this statement.)
CREATE TABLE shard_assignments (
    shard_id    integer     PRIMARY KEY,
    owner       text        NOT NULL,
    epoch       bigint      NOT NULL,
    assigned_at timestamptz NOT NULL
);
CREATE INDEX shard_assignments_owner ON shard_assignments (owner, epoch, shard_id);
