"""The statements of ``PostgresStore``, as constants (values are always bind parameters).

Batches travel as arrays and are spread with ``unnest``: one statement (one
round trip) per step whatever the batch size.

Locking order, which keeps the store free of deadlocks by construction:

* a fenced claim share-locks its ``shard_assignments`` rows (in shard order)
  before it touches any job;
* a transaction that may WAIT for a job row locks its jobs first, in ``job_id``
  order, and only then its runs, in ``run_id`` order;
* statements that lock a run together with its job (``claim_runs``, the reaper)
  and ``claim_due`` use ``SKIP LOCKED``, so they never wait;
* ``extend_leases`` locks runs only, in ``run_id`` order.
"""

from __future__ import annotations

JOB_COLUMNS = (
    "job_id, user_id, project_id, payload, payload_ref, payload_size, cron_schedule, timezone,"
    " next_fire_at, shard_id, status, max_retries, timeout_seconds, created_at, updated_at"
)
RUN_COLUMNS = (
    "run_id, job_id, user_id, scheduled_for, attempt, status, triggered_at, available_at,"
    " started_at, completed_at, output, exit_code, worker_id, error_message, lease_until"
)

# -- jobs ------------------------------------------------------------------------------------

INSERT_JOBS = (
    "INSERT INTO jobs (" + JOB_COLUMNS + ")"
    " SELECT j, u, p, pl, pr, ps, c, tz, nf, sh, st, mr, ts, ca, ua FROM unnest("
    "$1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[],"
    " $8::text[], $9::timestamptz[], $10::int[], $11::text[], $12::int[], $13::float8[],"
    " $14::timestamptz[], $15::timestamptz[])"
    " WITH ORDINALITY AS t(j, u, p, pl, pr, ps, c, tz, nf, sh, st, mr, ts, ca, ua, ord)"
    " ORDER BY ord"
)

GET_JOB = "SELECT " + JOB_COLUMNS + " FROM jobs WHERE job_id = $1 AND user_id = $2"

LIST_JOBS = (
    "SELECT seq, " + JOB_COLUMNS + " FROM jobs WHERE user_id = $1 AND seq > $2"
    " AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR project_id = $4)"
    " ORDER BY seq LIMIT $5"
)

LIST_RUNS = (
    "SELECT " + RUN_COLUMNS + " FROM job_runs WHERE job_id = $1 AND user_id = $2"
    " ORDER BY scheduled_for DESC, attempt DESC LIMIT $3"
)

# -- the picker ------------------------------------------------------------------------------

_CLAIM_DUE_HEAD = (
    "SELECT job_id, user_id, cron_schedule, timezone, next_fire_at FROM jobs"
    " WHERE next_fire_at IS NOT NULL AND next_fire_at <= $1"
)
_CLAIM_DUE_TAIL = " ORDER BY next_fire_at LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED"
CLAIM_DUE_ALL = _CLAIM_DUE_HEAD + _CLAIM_DUE_TAIL
CLAIM_DUE_SHARDS = _CLAIM_DUE_HEAD + " AND shard_id = ANY($3::int[])" + _CLAIM_DUE_TAIL

LOCK_OWNED_SHARDS = (
    "SELECT shard_id FROM shard_assignments WHERE owner = $1 AND epoch = $2"
    " ORDER BY shard_id FOR SHARE"
)
"""Fencing (``ClaimDueParams.owner``/``epoch``): the first statement of a fenced claim.
The shard rows stay share-locked until the claim commits, so a reassignment (which
updates them) waits for it; a claim that waited re-reads the row and finds the new epoch.
The same statement as ``coordination.LOCK_OWNED_SHARDS`` (``sql/002_coordination.sql``)."""

FIRE = (
    "WITH fired AS ("
    " INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
    " triggered_at, available_at)"
    " SELECT r, j, u, s, 1, 'QUEUED', $5, s"
    " FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[]) AS t(r, j, u, s))"
    " UPDATE jobs SET next_fire_at = t.following, updated_at = $5"
    " FROM unnest($2::uuid[], $6::timestamptz[]) AS t(job_id, following)"
    " WHERE jobs.job_id = t.job_id"
)
"""Create the claimed fires' runs and advance their jobs. The jobs are locked by the
``CLAIM_DUE_*`` select of the same transaction, so their ``next_fire_at`` is still the
fire being claimed (no re-check needed: one on ``next_fire_at`` led the planner to
probe the due index, quadratic when many jobs share one due time)."""

NEXT_DUE_ALL = "SELECT min(next_fire_at) FROM jobs WHERE next_fire_at IS NOT NULL"
NEXT_DUE_SHARDS = (
    "SELECT min(next_fire_at) FROM jobs"
    " WHERE next_fire_at IS NOT NULL AND shard_id = ANY($1::int[])"
)

# -- workers ---------------------------------------------------------------------------------

CLAIM_RUNS = (
    "WITH picked AS ("
    " SELECT r.run_id FROM job_runs r JOIN jobs j ON j.job_id = r.job_id"
    " WHERE r.status = 'QUEUED' AND r.available_at <= $1"
    " ORDER BY r.available_at LIMIT $2 FOR NO KEY UPDATE OF r, j SKIP LOCKED),"
    " leased AS ("
    " UPDATE job_runs r SET status = 'RUNNING', lease_owner = $3, worker_id = $3,"
    " lease_until = $4, started_at = greatest(r.available_at, $5)"
    " FROM picked WHERE r.run_id = picked.run_id"
    " RETURNING r.run_id, r.job_id, r.attempt, r.scheduled_for, r.available_at),"
    " busy AS ("
    " UPDATE jobs SET status = 'RUNNING', updated_at = $5"
    " WHERE job_id IN (SELECT job_id FROM leased) AND status = 'PENDING')"
    " SELECT l.run_id, l.job_id, l.attempt, l.scheduled_for, l.available_at, j.payload,"
    " j.payload_ref, j.timeout_seconds, j.max_retries, j.cron_schedule"
    " FROM leased l JOIN jobs j ON j.job_id = l.job_id ORDER BY l.available_at, l.run_id"
)

PURGE_RUNS = (
    "DELETE FROM job_runs WHERE run_id IN (SELECT run_id FROM job_runs"
    " WHERE status NOT IN ('QUEUED', 'RUNNING') AND completed_at < $1 LIMIT $2"
    " FOR UPDATE SKIP LOCKED)"
)
PURGE_JOBS = (
    "DELETE FROM jobs WHERE job_id IN (SELECT job_id FROM jobs j"
    " WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND updated_at < $1"
    " AND NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.job_id = j.job_id) LIMIT $2"
    " FOR UPDATE SKIP LOCKED) RETURNING payload_ref"
)
BACKLOG = (
    "SELECT (SELECT count(*) FROM jobs WHERE next_fire_at <= $1),"
    " (SELECT min(next_fire_at) FROM jobs WHERE next_fire_at <= $1),"
    " (SELECT count(*) FROM job_runs WHERE status = 'QUEUED' AND available_at <= $1),"
    " (SELECT count(*) FROM job_runs WHERE status = 'RUNNING')"
)
NEXT_AVAILABLE = "SELECT min(available_at) FROM job_runs WHERE status = 'QUEUED'"

LOCK_JOBS_OF_RUNS = (
    "SELECT job_id, status, cron_schedule IS NOT NULL FROM jobs"
    " WHERE job_id IN (SELECT job_id FROM job_runs WHERE run_id = ANY($1::uuid[]))"
    " ORDER BY job_id FOR NO KEY UPDATE"
)

LOCK_RUNS = (
    "SELECT run_id, job_id, user_id, scheduled_for, attempt, status, lease_owner FROM job_runs"
    " WHERE run_id = ANY($1::uuid[]) ORDER BY run_id FOR NO KEY UPDATE"
)

_HELD = (
    "WITH held AS ("
    " SELECT run_id FROM job_runs WHERE run_id = ANY($1::uuid[]) AND lease_owner = $2"
    " AND status = 'RUNNING' ORDER BY run_id FOR NO KEY UPDATE)"
)

EXTEND_LEASES = (
    _HELD + " UPDATE job_runs r SET lease_until = $3 FROM held WHERE r.run_id = held.run_id"
    " RETURNING r.run_id"
)

RELEASE_RUNS = (
    _HELD + ", released AS ("
    " UPDATE job_runs r SET status = 'QUEUED', lease_owner = NULL, lease_until = NULL,"
    " worker_id = NULL, started_at = NULL FROM held WHERE r.run_id = held.run_id"
    " RETURNING r.job_id),"
    " pending AS ("
    " UPDATE jobs SET status = 'PENDING'"
    " WHERE job_id IN (SELECT job_id FROM released) AND status = 'RUNNING')"
    " SELECT count(*) FROM released"
)

# -- ends of attempts ------------------------------------------------------------------------

COMPLETE = (
    "WITH ended AS ("
    " UPDATE job_runs r SET status = t.status, started_at = t.started, completed_at = t.done,"
    " output = t.output, exit_code = t.code, error_message = t.error, lease_owner = NULL,"
    " lease_until = NULL"
    " FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[],"
    " $6::int[], $7::text[]) AS t(run_id, status, started, done, output, code, error)"
    " WHERE r.run_id = t.run_id),"
    " retried AS ("
    " INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
    " triggered_at, available_at)"
    " SELECT r, j, u, s, a, 'QUEUED', tr, av FROM unnest($8::uuid[], $9::uuid[], $10::text[],"
    " $11::timestamptz[], $12::int[], $13::timestamptz[], $14::timestamptz[])"
    " AS t(r, j, u, s, a, tr, av))"
    " UPDATE jobs SET status = t.status, updated_at = t.at"
    " FROM unnest($15::uuid[], $16::text[], $17::timestamptz[]) AS t(job_id, status, at)"
    " WHERE jobs.job_id = t.job_id"
)
"""Record outcomes (already checked by compare-and-set under lock), create the retries'
next attempts and settle the jobs, in one statement."""

REAP = (
    "WITH ended AS ("
    " UPDATE job_runs r SET status = t.status, completed_at = $3, error_message = $4,"
    " lease_owner = NULL, lease_until = NULL"
    " FROM unnest($1::uuid[], $2::text[]) AS t(run_id, status) WHERE r.run_id = t.run_id),"
    " retried AS ("
    " INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
    " triggered_at, available_at)"
    " SELECT r, j, u, s, a, 'QUEUED', $3, $5 FROM unnest($6::uuid[], $7::uuid[], $8::text[],"
    " $9::timestamptz[], $10::int[]) AS t(r, j, u, s, a))"
    " UPDATE jobs SET status = t.status, updated_at = $3"
    " FROM unnest($11::uuid[], $12::text[]) AS t(job_id, status) WHERE jobs.job_id = t.job_id"
)
"""The reaper's writes for the expired runs it locked: same shape as ``COMPLETE``."""

REAP_SELECT_EXPIRED = (
    "SELECT r.run_id, r.job_id, r.user_id, r.scheduled_for, r.attempt, j.max_retries,"
    " j.status, j.cron_schedule IS NOT NULL FROM job_runs r JOIN jobs j ON j.job_id = r.job_id"
    " WHERE r.status = 'RUNNING' AND r.lease_until < $1 ORDER BY r.lease_until LIMIT $2"
    " FOR NO KEY UPDATE OF r, j SKIP LOCKED"
)
REAP_SELECT_ALL = (
    "SELECT r.run_id, r.job_id, r.user_id, r.scheduled_for, r.attempt, j.max_retries,"
    " j.status, j.cron_schedule IS NOT NULL FROM job_runs r JOIN jobs j ON j.job_id = r.job_id"
    " WHERE r.status = 'RUNNING' ORDER BY r.lease_until LIMIT $1"
    " FOR NO KEY UPDATE OF r, j SKIP LOCKED"
)

# -- cancel ----------------------------------------------------------------------------------

LOCK_USER_JOB = (
    "SELECT " + JOB_COLUMNS + " FROM jobs WHERE job_id = $1 AND user_id = $2 FOR NO KEY UPDATE"
)

CANCEL = (
    "WITH dropped AS ("
    " UPDATE job_runs SET status = 'CANCELLED', completed_at = $2,"
    " error_message = 'cancelled by the user' WHERE job_id = $1 AND status = 'QUEUED'),"
    " job AS ("
    " UPDATE jobs SET status = 'CANCELLED', next_fire_at = NULL, updated_at = $2"
    " WHERE job_id = $1 RETURNING " + JOB_COLUMNS + ")"
    " SELECT job.*, ARRAY(SELECT run_id::text FROM job_runs"
    " WHERE job_id = $1 AND status = 'RUNNING' ORDER BY scheduled_for, attempt) FROM job"
)
