"""PostgreSQL only: the migrations produce the declared schema, once, even when raced,
and upgrade a database that already holds data."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from chronoq.adapters.postgres import PostgresStore, PostgresSubmissionLog
from chronoq.adapters.postgres.migrations import apply_migrations, migrations
from chronoq.domain.jobs import RunOutcome
from chronoq.domain.policies import Policies
from chronoq.domain.queues import ClaimLimits
from chronoq.domain.states import RUN_TERMINAL, RunStatus
from chronoq.ports.dispatch import ClaimDueParams, ClaimRunsParams

from .conftest import CONNECT_TIMEOUT, create_database, drop_database, dsn_for
from .helpers import T0, make_job

TABLES = {
    "jobs", "job_runs", "fence_epoch", "fenced_shards", "schema_migrations",
    "api_tokens",  # 006: --auth token
    "fire_skips", "fire_skip_totals",  # 008: the fire ledger
    "live_outputs",  # 011: live output of running runs
    "fence_owners",  # 014: one row lock per fenced claim
}  # fmt: skip
"""The store's tables (other ports' migrations add theirs: coordination, submissions)."""

COLUMNS = {
    "jobs": {
        "job_id": "uuid",
        "seq": "bigint",
        "user_id": "text",
        "project_id": "text",
        "payload": "text",
        "payload_ref": "text",
        "payload_size": "integer",
        "cron_schedule": "text",
        "timezone": "text",
        "next_fire_at": "timestamp with time zone",
        "shard_id": "integer",
        "status": "text",
        "max_retries": "integer",
        "timeout_seconds": "double precision",
        "created_at": "timestamp with time zone",
        "updated_at": "timestamp with time zone",
        # 008: schedule policies, job control, idempotency keys
        "overlap": "text",
        "misfire": "text",
        "catch_up_window_seconds": "double precision",
        "start_deadline_seconds": "double precision",
        "jitter_seconds": "double precision",
        "start_at": "timestamp with time zone",
        "end_at": "timestamp with time zone",
        "max_fires": "integer",
        "dst_gap": "text",
        "dst_repeat": "text",
        "fire_count": "bigint",
        "paused_fire_at": "timestamp with time zone",
        "running_run_id": "uuid",
        "buffered_run_id": "uuid",
        "idempotency_key": "text",
        "request_hash": "text",
        "queue": "text",  # 009: queues and priorities
        "priority": "integer",
    },
    "job_runs": {
        "run_id": "uuid",
        "job_id": "uuid",
        "user_id": "text",
        "scheduled_for": "timestamp with time zone",
        "attempt": "integer",
        "status": "text",
        "triggered_at": "timestamp with time zone",
        "available_at": "timestamp with time zone",
        "started_at": "timestamp with time zone",
        "completed_at": "timestamp with time zone",
        "output": "text",
        "exit_code": "integer",
        "worker_id": "text",
        "error_message": "text",
        "lease_owner": "text",
        "lease_until": "timestamp with time zone",
        "interruptions": "integer",
        "cancel_requested": "boolean",
        "published_at": "timestamp with time zone",  # 005: the run queue's outbox
        "output_ref": "text",  # 007: an offloaded output's blob reference
        "manual": "boolean",  # 008: a manual fire (trigger)
        "queue": "text",  # 009: its job's queue and priority when created
        "priority": "integer",
    },
    "fire_skips": {  # 008
        "job_id": "uuid",
        "user_id": "text",
        "scheduled_for": "timestamp with time zone",
        "last_scheduled_for": "timestamp with time zone",
        "fire_count": "bigint",
        "reason": "text",
        "run_id": "uuid",
        "manual": "boolean",
        "recorded_at": "timestamp with time zone",
    },
    "fire_skip_totals": {"reason": "text", "fires": "bigint"},  # 008
    "fence_epoch": {"singleton": "boolean", "epoch": "bigint"},
    "fenced_shards": {"shard_id": "integer", "owner": "text", "epoch": "bigint"},
    "fence_owners": {"owner": "text", "epoch": "bigint"},
    "submissions": {
        "seq": "bigint",
        "job_id": "uuid",
        "user_id": "text",
        "body": "bytea",
        "submitted_at": "timestamp with time zone",
        "held_by": "text",
        "held_until": "timestamp with time zone",
    },
    "api_tokens": {  # 006: --auth token
        "token_id": "text",
        "token_hash": "bytea",
        "user_id": "text",
        "allow_shell": "boolean",
        "created_at": "timestamp with time zone",
        "expires_at": "timestamp with time zone",
        "revoked_at": "timestamp with time zone",
    },
    "live_outputs": {  # 011
        "run_id": "uuid",
        "attempt": "integer",
        "start_offset": "bigint",
        "end_offset": "bigint",
        "output": "text",
    },
    "schema_migrations": {
        "version": "integer",
        "name": "text",
        "applied_at": "timestamp with time zone",
    },
}

NOT_NULL = {
    "jobs": {
        "job_id", "seq", "user_id", "project_id", "payload_size", "shard_id", "status",
        "max_retries", "created_at", "updated_at",
        "overlap", "misfire", "jitter_seconds", "dst_gap", "dst_repeat", "fire_count",
        "queue", "priority",
    },
    "job_runs": {
        "run_id", "job_id", "user_id", "scheduled_for", "attempt", "status", "triggered_at",
        "available_at", "interruptions", "cancel_requested", "manual", "queue", "priority",
    },
    "fire_skips": {
        "job_id", "user_id", "scheduled_for", "last_scheduled_for", "reason", "manual",
        "recorded_at",
    },
    "fire_skip_totals": {"reason", "fires"},
    "fence_epoch": {"singleton", "epoch"},
    "fenced_shards": {"shard_id", "owner", "epoch"},
    "fence_owners": {"owner", "epoch"},
    "submissions": {"seq", "job_id", "user_id", "body", "submitted_at"},
    "api_tokens": {"token_id", "token_hash", "user_id", "allow_shell", "created_at"},
    "live_outputs": {"run_id", "attempt", "start_offset", "end_offset", "output"},
}  # fmt: skip

INDEXES = {
    # name: (table, unique, fragment of the definition)
    "jobs_pkey": ("jobs", True, "(job_id)"),
    "jobs_due": ("jobs", False, "(next_fire_at) WHERE (next_fire_at IS NOT NULL)"),
    "jobs_shard_due": ("jobs", False, "(shard_id, next_fire_at) WHERE (next_fire_at IS NOT NULL)"),
    "jobs_user": ("jobs", False, "(user_id, seq)"),
    "job_runs_pkey": ("job_runs", True, "(run_id)"),
    "job_runs_fire_attempt": ("job_runs", True, "(job_id, scheduled_for, attempt)"),
    "runs_one_terminal_per_fire": ("job_runs", True, "(job_id, scheduled_for) WHERE"),
    "runs_queued": ("job_runs", False, "(available_at) WHERE (status = 'QUEUED'::text)"),
    "runs_running": ("job_runs", False, "(lease_until) WHERE (status = 'RUNNING'::text)"),
    "runs_unpublished": ("job_runs", False, "(available_at) WHERE ((status = 'QUEUED'::text)"),
    "schema_migrations_pkey": ("schema_migrations", True, "(version)"),
    "fence_epoch_pkey": ("fence_epoch", True, "(singleton)"),
    "fenced_shards_pkey": ("fenced_shards", True, "(shard_id)"),
    "fenced_shards_owner": ("fenced_shards", False, "(owner, epoch, shard_id)"),
    "api_tokens_pkey": ("api_tokens", True, "(token_id)"),
    "api_tokens_hash": ("api_tokens", True, "(token_hash)"),
    # 010's per-user limit indexes are dropped by 013: the store builds them where a limit
    # is set (adapters/postgres/limit_indexes.py, tests/contract/test_postgres_limit_indexes.py)
    # 008
    "jobs_idempotency_key": (
        "jobs",
        True,
        "(user_id, idempotency_key) WHERE (idempotency_key IS NOT NULL)",
    ),
    "jobs_idempotency_age": ("jobs", False, "(created_at) WHERE (idempotency_key IS NOT NULL)"),
    "fire_skips_pkey": ("fire_skips", True, "(job_id, scheduled_for)"),
    "fire_skips_recorded": ("fire_skips", False, "(recorded_at)"),
    "fire_skip_totals_pkey": ("fire_skip_totals", True, "(reason)"),
    # 009
    "runs_queued_priority": (
        "job_runs",
        False,
        "(priority DESC, available_at) WHERE (status = 'QUEUED'::text)",
    ),
    "runs_queued_queue": (
        "job_runs",
        False,
        "(queue, priority DESC, available_at) WHERE (status = 'QUEUED'::text)",
    ),
    "live_outputs_pkey": ("live_outputs", True, "(run_id)"),  # 011
    "fence_owners_pkey": ("fence_owners", True, "(owner)"),  # 014
}
TERMINAL = tuple(sorted(s.value for s in RUN_TERMINAL))
NOT_TERMINAL = tuple(s.value for s in RunStatus if s not in RUN_TERMINAL)


@pytest.fixture
def conn(pg_conn: Any) -> Any:
    return pg_conn


async def _schema(conn: Any) -> dict[str, Any]:
    tables = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    columns = await conn.fetch(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
    )
    indexes = await conn.fetch(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        " ORDER BY indexname"
    )
    return {
        "tables": {r["table_name"] for r in tables},
        "columns": [tuple(r) for r in columns],
        "indexes": {r["indexname"]: (r["tablename"], r["indexdef"]) for r in indexes},
    }


async def test_migrations_produce_the_declared_schema(conn: Any) -> None:
    schema = await _schema(conn)
    assert schema["tables"] >= TABLES
    for table, expected in COLUMNS.items():
        found = {c[1]: c[2] for c in schema["columns"] if c[0] == table}
        assert found == expected, table
    for table, required in NOT_NULL.items():
        nullable = {c[1] for c in schema["columns"] if c[0] == table and c[3] == "YES"}
        assert set(COLUMNS[table]) - nullable == required, table
    ours = {name for name, (table, _) in schema["indexes"].items() if table in TABLES}
    assert ours == set(INDEXES)
    for name, (table, unique, fragment) in INDEXES.items():
        found_table, definition = schema["indexes"][name]
        assert found_table == table, name
        assert definition.startswith("CREATE UNIQUE INDEX" if unique else "CREATE INDEX"), name
        assert fragment in definition, (name, definition)
    terminal = schema["indexes"]["runs_one_terminal_per_fire"][1]
    assert all(f"'{s}'" in terminal for s in TERMINAL)
    assert not any(f"'{s}'" in terminal for s in NOT_TERMINAL)  # INTERRUPTED ends an attempt
    options = dict(await conn.fetch(
        "SELECT relname, reloptions FROM pg_class WHERE relname IN ('jobs', 'job_runs')"
    ))  # fmt: skip
    assert options == {"jobs": ["fillfactor=70"], "job_runs": ["fillfactor=70"]}  # 012, 013
    versions = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"]) for r in versions] == [
        (m.version, m.name) for m in migrations()
    ]


async def test_migrations_are_numbered_without_gaps() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert all(m.name.endswith(".sql") and m.name[:3].isdigit() for m in found)


async def test_applying_migrations_again_is_a_no_op(conn: Any, pg_database: str) -> None:
    before = await _schema(conn)
    recorded = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")

    assert await apply_migrations(conn) == []
    store = PostgresStore(pg_database)
    await store.start()
    await store.close()

    assert await _schema(conn) == before
    assert await conn.fetch("SELECT * FROM schema_migrations ORDER BY version") == recorded


async def test_racing_starters_on_an_empty_database_migrate_once(pg_template: str) -> None:
    name = f"chronoq_contract_empty_{uuid.uuid4().hex[:16]}"
    await create_database(name)
    stores = [PostgresStore(dsn_for(name)) for _ in range(4)]
    try:
        await asyncio.gather(*(s.start() for s in stores))
        conn = await asyncpg.connect(dsn_for(name), timeout=CONNECT_TIMEOUT)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
            assert sorted(versions) == [m.version for m in migrations()]
            assert (await _schema(conn))["tables"] >= TABLES
        finally:
            await conn.close()
    finally:
        await asyncio.gather(*(s.close() for s in stores))
        await drop_database(name)


async def test_the_rework_migration_upgrades_a_database_with_data(pg_template: str) -> None:
    """A database migrated to 003 holding a RUNNING run and a logged submission: after
    004 the run has no interruptions and no cancel, nothing is fenced, and the
    submission is readable through the new log."""
    name = f"chronoq_contract_upgrade_{uuid.uuid4().hex[:16]}"
    await create_database(name)
    conn = await asyncpg.connect(dsn_for(name), timeout=CONNECT_TIMEOUT)
    store = PostgresStore(dsn_for(name))
    log = PostgresSubmissionLog(dsn_for(name))
    try:
        await _migrate_up_to(conn, 3)
        job, logged = make_job(), make_job()
        await conn.execute(
            "INSERT INTO jobs (job_id, user_id, project_id, payload_size, shard_id, status,"
            " max_retries, created_at, updated_at) VALUES ($1, 'alice', 'p', 0, 0, 'RUNNING',"
            " 0, $2, $2)",
            job.job_id,
            T0,
        )
        await conn.execute(
            "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
            " triggered_at, available_at, started_at, lease_owner, lease_until)"
            " VALUES ($1, $2, 'alice', $3, 1, 'RUNNING', $3, $3, $3, 'w1', $3)",
            str(uuid.uuid4()),
            job.job_id,
            T0,
        )
        await conn.execute(
            "INSERT INTO submissions (job_id, user_id, body) VALUES ($1, $2, $3)",
            logged.job_id,
            logged.user_id,
            msgspec.json.encode(logged),
        )

        await store.start()  # applies 004
        await log.start()

        row = await conn.fetchrow("SELECT interruptions, cancel_requested FROM job_runs")
        assert tuple(row) == (0, False)
        assert await conn.fetchval("SELECT epoch FROM fence_epoch") == 0
        (run,) = await store.list_runs("alice", job.job_id)
        assert (run.status, run.interruptions) == (RunStatus.RUNNING, 0)
        (entry,) = await log.read("writer-1", 10, hold=30)
        assert entry.job == logged
    finally:
        await log.close()
        await store.close()
        await conn.close()
        await drop_database(name)


async def test_the_policies_migration_upgrades_a_database_with_data(pg_template: str) -> None:
    """A database migrated to 007 holding a recurring job with a RUNNING run: after 008
    the job has the default policies, no fires counted, no key; the run is not manual;
    the store goes on with them (the run ends, the next fire is claimed)."""
    async with _upgraded_from(7) as (conn, store):
        job = make_job(cron="@every 10s")
        run_id = str(uuid.uuid4())
        await conn.execute(
            "INSERT INTO jobs (job_id, user_id, project_id, payload_size, cron_schedule,"
            " next_fire_at, shard_id, status, max_retries, created_at, updated_at)"
            " VALUES ($1, 'alice', 'p', 0, '@every 10s', $2, 0, 'RUNNING', 0, $3, $3)",
            job.job_id,
            T0 + timedelta(seconds=10),
            T0,
        )
        await conn.execute(
            "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
            " triggered_at, available_at, started_at, lease_owner, worker_id, lease_until)"
            " VALUES ($1, $2, 'alice', $3, 1, 'RUNNING', $3, $3, $3, 'w1', 'w1', $4)",
            run_id,
            job.job_id,
            T0,
            T0 + timedelta(seconds=30),
        )

        await store.start()  # applies 008

        upgraded = await store.get_job("alice", job.job_id)
        assert upgraded is not None
        assert (upgraded.policies, upgraded.fire_count) == (Policies(), 0)
        assert (upgraded.paused_fire_at, upgraded.idempotency_key, upgraded.request_hash) == (
            None,
            None,
            None,
        )
        (run,) = await store.list_runs("alice", job.job_id)
        assert (run.status, run.manual) == (RunStatus.RUNNING, False)
        done = RunOutcome(
            run_id=run_id, worker_id="w1", attempt=1, status=RunStatus.COMPLETED,
            started_at=T0, completed_at=T0 + timedelta(seconds=1), output="", exit_code=0,
            error_message=None,
        )  # fmt: skip
        assert await store.complete_runs([done]) == [True]
        now = T0 + timedelta(seconds=10)
        (fired,) = await store.claim_due(ClaimDueParams(shards=None, now=now, horizon=now))
        assert fired.scheduled_for == now
        after = await store.get_job("alice", job.job_id)
        assert after is not None and after.fire_count == 1
        assert await store.skip_counts() == {}


async def test_the_queues_migration_upgrades_a_database_with_data(pg_template: str) -> None:
    """A database migrated to 008 holding a job with a QUEUED run and one with a RUNNING
    run: after 009 both jobs and runs are in queue ``default`` at priority 0; a worker of
    that queue claims the queued run, and a queue limit counts the old RUNNING run."""
    async with _upgraded_from(8) as (conn, store):
        queued, running = make_job(), make_job()
        for job, status in ((queued, "QUEUED"), (running, "RUNNING")):
            await conn.execute(
                "INSERT INTO jobs (job_id, user_id, project_id, payload_size, next_fire_at,"
                " shard_id, status, max_retries, created_at, updated_at)"
                " VALUES ($1, 'alice', 'p', 0, NULL, 0, $2, 0, $3, $3)",
                job.job_id,
                "PENDING" if status == "QUEUED" else "RUNNING",
                T0,
            )
            await conn.execute(
                "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
                " triggered_at, available_at, lease_owner, worker_id, lease_until)"
                " VALUES ($1, $2, 'alice', $3, 1, $4, $3, $3, $5, $5, $6)",
                str(uuid.uuid4()),
                job.job_id,
                T0,
                status,
                None if status == "QUEUED" else "w0",
                None if status == "QUEUED" else T0 + timedelta(seconds=30),
            )

        await store.start()  # applies 009

        for job in (queued, running):
            upgraded = await store.get_job("alice", job.job_id)
            assert upgraded is not None and (upgraded.queue, upgraded.priority) == ("default", 0)
            (run,) = await store.list_runs("alice", job.job_id)
            assert (run.queue, run.priority) == ("default", 0)
        now = T0 + timedelta(seconds=1)

        def claim(limit: int) -> ClaimRunsParams:
            return ClaimRunsParams(
                worker_id="w1", now=now, horizon=now, lease_until=now + timedelta(seconds=30),
                queues=frozenset({"default"}), limits=ClaimLimits(per_queue={"default": limit}),
            )  # fmt: skip

        assert await store.claim_runs(claim(1)) == []  # the old RUNNING run fills it
        (claimed,) = await store.claim_runs(claim(2))
        assert claimed.job_id == queued.job_id


async def test_the_fence_owners_migration_keeps_a_fence_in_force(pg_template: str) -> None:
    """A database migrated to 013 whose fence gives shards to p1 and p2 at epoch 7: after
    014 each owner claims from its own shards at that epoch, and no one else claims."""
    async with _upgraded_from(13) as (conn, store):
        await conn.execute(
            "INSERT INTO fenced_shards (shard_id, owner, epoch)"
            " VALUES (0, 'p1', 7), (1, 'p1', 7), (2, 'p2', 7)"
        )
        await conn.execute("UPDATE fence_epoch SET epoch = 7")

        await store.start()  # applies 014
        jobs = [make_job(shard_id=s, next_fire_at=T0) for s in (0, 1, 2)]
        await store.insert_jobs(jobs)

        def due(owner: str, epoch: int) -> ClaimDueParams:
            return ClaimDueParams(
                shards=None, now=T0, horizon=T0, limit=10, owner=owner, epoch=epoch
            )

        assert await store.claim_due(due("p1", 6)) == []
        assert await store.claim_due(due("p3", 7)) == []
        mine = {r.job_id for r in await store.claim_due(due("p1", 7))}
        assert mine == {jobs[0].job_id, jobs[1].job_id}
        (theirs,) = await store.claim_due(due("p2", 7))
        assert theirs.job_id == jobs[2].job_id


@contextlib.asynccontextmanager
async def _upgraded_from(version: int) -> AsyncIterator[tuple[Any, PostgresStore]]:
    """A new database migrated up to ``version`` only, as an older release left it: a
    connection and a store not started yet (its start applies the rest); closed and
    dropped after."""
    name = f"chronoq_contract_upgrade_{uuid.uuid4().hex[:16]}"
    await create_database(name)
    conn = await asyncpg.connect(dsn_for(name), timeout=CONNECT_TIMEOUT)
    store = PostgresStore(dsn_for(name))
    try:
        await _migrate_up_to(conn, version)
        yield conn, store
    finally:
        await store.close()
        await conn.close()
        await drop_database(name)


async def _migrate_up_to(conn: Any, version: int) -> None:
    """Apply the packaged migrations up to ``version`` only, as an older release did."""
    async with conn.transaction():
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in migrations():
            if migration.version <= version:
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
