"""Fixtures of the chaos suite (RELIABILITY.md): real processes, real faults.

* ``pg`` (per module): a private PostgreSQL (``fsync=off``; a module that tests
  durability overrides it with ``ChaosPostgres(..., fast=False)``), and
  ``pg_template``: a database migrated once by ``chronoq migrate``.
* ``chaos`` (per test): a fresh database cloned from the template, a
  ``Supervisor`` over it (seeded RNG: ``@pytest.mark.chaos(seed=N)``, or
  ``CHRONOQ_CHAOS_SEED``), a ``Ledger``, a ``JobBook`` and an ``Api`` client. At
  teardown every process the supervisor started is killed, probe jobs left
  running by killed workers are killed (by the ledger's pids), and the database
  is dropped. A failing test's report carries the fault log and log tails.

Without PostgreSQL binaries the suite is skipped, except under ``CI`` where it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from chronoq.runtime.pgserver import find_bindir
from tests.support import postgres as support_postgres

from .harness import (
    Api,
    ChaosPostgres,
    Db,
    Execution,
    JobBook,
    Ledger,
    Supervisor,
    seed_for,
)
from .invariants import Report, check, wait_settled


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "chaos(seed=N): a chaos scenario (real processes killed, PostgreSQL crashed); "
        "seed of its fault RNG",
    )


def require_postgres() -> None:
    if find_bindir() is None:
        reason = "PostgreSQL binaries not found (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set: the chaos suite must run")
        pytest.skip(reason)


@contextlib.contextmanager
def private_postgres(**kwargs: Any) -> Iterator[ChaosPostgres]:
    """A started ``ChaosPostgres`` in a fresh temp folder (``tests.support.postgres``),
    stopped and removed afterwards; skipped (failed under CI) without PostgreSQL."""
    require_postgres()
    factory = functools.partial(ChaosPostgres, **kwargs)
    with support_postgres.private_postgres(factory, prefix="chronoq-chaos-pg-") as server:
        yield server


@pytest.fixture(scope="module")
def pg() -> Iterator[ChaosPostgres]:
    with private_postgres(fast=True) as server:
        yield server


@pytest.fixture(scope="module")
def pg_template(pg: ChaosPostgres) -> str:
    return support_postgres.migrated_template(pg.dsn, prefix="chaos_template")


_LIVE: list[Chaos] = []


@dataclass(slots=True)
class Chaos:
    """Everything one scenario works with."""

    pg: ChaosPostgres
    database: str
    db: Db
    sup: Supervisor
    ledger: Ledger
    book: JobBook
    api: Api

    def cluster(self, extra: tuple[str, ...] = (), **counts: int) -> None:
        """Add and start ``api=``, ``coordinator=``, ``picker=``, ``worker=`` members."""
        self.sup.add_cluster(extra, **counts)
        self.sup.start()
        self.sup.wait_cluster()

    def runs(self, job_id: str) -> list[Any]:
        """The job's runs, oldest fire and attempt first."""
        return self.db.fetch(
            "SELECT attempt, status, scheduled_for, worker_id, started_at, completed_at,"
            " error_message, triggered_at, interruptions FROM job_runs WHERE job_id = $1::uuid"
            " ORDER BY scheduled_for, attempt",
            job_id,
        )

    def executions(self, job_id: str) -> list[Execution]:
        return [e for e in self.ledger.read() if e.job_id == job_id]

    def settle_and_check(
        self, cutoff: datetime, *, timeout: float = 60.0, probe_jobs: Any = None
    ) -> Report:
        """Wait until everything due by ``cutoff`` ended, then check I1–I7."""
        settled = wait_settled(self.db, cutoff, timeout)
        if probe_jobs is None:  # jobs whose payload writes to this ledger
            needle = str(self.ledger.path)
            probe_jobs = [j.job_id for j in self.book.jobs.values()
                          if needle in str(j.spec.get("payload"))]  # fmt: skip
        report = check(
            self.db, self.book, self.ledger.read, self.sup.faults, cutoff,
            bad_ledger_lines=lambda: self.ledger.bad_lines, probe_jobs=probe_jobs,
            context=self.sup.fault_log() + "\n" + self.book.summary(),
        )  # fmt: skip
        if not settled:
            report.add("I4 did not settle", f"fires due by {cutoff} still open after {timeout}s")
        crashed = self.sup.unexpected_exits()
        if crashed:
            report.add("harness: a role died by itself", "; ".join(crashed))
        return report


def dump_tables(db: Db, folder: Path) -> None:
    """Keep the store of a failed scenario as CSV files next to its logs."""
    for table in (
        "jobs",
        "job_runs",
        "members",
        "shard_assignments",
        "fenced_shards",
        "fence_owners",
        "leader_lease",
    ):
        with contextlib.suppress(Exception):
            asyncio.run(_copy_out(db.dsn, table, folder / f"{table}.csv"))


async def _copy_out(dsn: str, table: str, path: Path) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.copy_from_query(f"SELECT * FROM {table}", output=str(path), format="csv",
                                   header=True)  # fmt: skip
    finally:
        await conn.close()


@pytest.fixture
def chaos(
    request: pytest.FixtureRequest,
    pg: ChaosPostgres,
    pg_template: str,
    tmp_path: Path,
) -> Iterator[Chaos]:
    marker = request.node.get_closest_marker("chaos")
    default_seed = zlib.crc32(request.node.name.encode()) % 10_000
    seed = seed_for(int(marker.kwargs.get("seed", default_seed)) if marker else default_seed)
    database = f"chaos_{uuid.uuid4().hex[:12]}"
    dsn = support_postgres.create_database(pg.dsn, database, template=pg_template)
    db = Db(dsn)
    sup = Supervisor(tmp_path / "cluster", dsn, db, seed)
    book = JobBook()
    ctx = Chaos(pg=pg, database=database, db=db, sup=sup, ledger=Ledger(tmp_path / "ledger.txt"),
                book=book, api=Api(sup, book))  # fmt: skip
    _LIVE.append(ctx)
    try:
        yield ctx
    finally:
        _LIVE.remove(ctx)
        sup.close()
        if getattr(request.node, "chaos_failed", False):
            dump_tables(db, tmp_path)
        ctx.ledger.kill_leftovers()
        ctx.api.close()
        if pg.process is None:  # a scenario that crashed it left it down
            pg.start()
        support_postgres.drop_database(pg.dsn, database)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item.chaos_failed = True  # type: ignore[attr-defined]
    if report.failed and _LIVE:
        for ctx in _LIVE:
            report.sections.append(("chaos faults", ctx.sup.fault_log()))
            report.sections.append(("chaos logs", ctx.sup.log_tails(30)))
            report.sections.append(("postgres log", ctx.pg.log_tail(30)))
