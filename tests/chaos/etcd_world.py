"""The chaos world with etcd coordination: ``EtcdDb`` reads the leader, members and shard
assignment from etcd (where the roles keep them), ``etcd_chaos`` builds the ``chaos``
fixture's world around a set of etcd servers. Shared by the etcd chaos scenarios and the
seed-shaped stack's (``test_seed_stack.py``)."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chronoq.runtime.servers.etcd import EtcdServer
from tests.support import postgres as support_postgres
from tests.support.waiting import wait_for

from . import conftest as chaos_conftest
from .conftest import Chaos
from .harness import MEMBER_TTL, Api, ChaosPostgres, Db, JobBook, Ledger, Supervisor, seed_for

PREFIX = "chaos"
"""The key prefix the roles use in etcd (their --coordination URL ends with /chaos)."""


class EtcdDb(Db):
    """``Db`` with the cluster state (leader, members, assignment) read from etcd."""

    def __init__(self, dsn: str, endpoints: list[str]) -> None:
        super().__init__(dsn)
        self.endpoints = endpoints

    def _range(self, key: str, prefix: bool = False) -> list[tuple[str, Any]] | None:
        body: dict[str, str] = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(key[:-1] + chr(ord(key[-1]) + 1))
        for endpoint in self.endpoints:
            try:
                response = httpx.post(f"http://{endpoint}/v3/kv/range", json=body, timeout=1.0)
                answer = response.json()
            except (httpx.HTTPError, ValueError):
                continue
            if response.status_code != 200 or "error" in answer:
                continue  # this member cannot serve now: ask the next one
            return [(base64.b64decode(kv["key"]).decode(),
                     json.loads(base64.b64decode(kv["value"])))
                    for kv in answer.get("kvs", ())]  # fmt: skip
        return None

    def leader(self) -> tuple[str, int] | None:
        found = self._range(f"{PREFIX}/leader")
        return (found[0][1]["holder"], int(found[0][1]["epoch"])) if found else None

    def live_members(self, role: str) -> dict[str, int]:
        """Members of ``role`` that wrote a heartbeat within the member ttl (one machine:
        the writers' clocks are ours)."""
        since = datetime.now(UTC) - timedelta(seconds=MEMBER_TTL)
        out = {}
        for key, value in self._range(f"{PREFIX}/members/", prefix=True) or ():
            beat = datetime.fromisoformat(value["heartbeat_at"])
            if value["role"] == role and beat > since:
                out[key.rsplit("/", 1)[1]] = int(value["pid"])
        return out

    def assignment(self) -> dict[str, set[int]]:
        found = self._range(f"{PREFIX}/assignment")
        owners: dict[str, set[int]] = {}
        for shard, owner in found[0][1]["owners"].items() if found else ():
            owners.setdefault(owner, set()).add(int(shard))
        return owners


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@contextlib.contextmanager
def etcd_chaos(
    request: pytest.FixtureRequest, pg: ChaosPostgres, template: str, tmp_path: Path,
    etcds: list[EtcdServer],
) -> Iterator[Chaos]:  # fmt: skip
    """The ``chaos`` fixture's world, with every role coordinating through ``etcds``."""
    for server in etcds:
        server.start(timeout=30)
    assert wait_for(lambda: all(s.healthy() for s in etcds), 30), "etcd not healthy"
    database = f"chaos_{uuid.uuid4().hex[:12]}"
    dsn = support_postgres.create_database(pg.dsn, database, template=template)
    db = EtcdDb(dsn, [s.endpoint for s in etcds])
    seed = seed_for(int(request.node.get_closest_marker("chaos").kwargs["seed"]))
    sup = Supervisor(tmp_path / "cluster", dsn, db, seed)
    book = JobBook()
    ctx = Chaos(pg=pg, database=database, db=db, sup=sup, ledger=Ledger(tmp_path / "ledger.txt"),
                book=book, api=Api(sup, book))  # fmt: skip
    chaos_conftest._LIVE.append(ctx)
    try:
        yield ctx
    finally:
        chaos_conftest._LIVE.remove(ctx)
        sup.close()
        ctx.ledger.kill_leftovers()
        ctx.api.close()
        for server in etcds:
            server.kill()
        support_postgres.drop_database(pg.dsn, database)
