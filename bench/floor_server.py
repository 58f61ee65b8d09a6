"""The floor: the smallest correct PostgreSQL job queue, as a process (``python -m
bench.floor_server``), to compare Chronoq on PostgreSQL with (``bench.floor``).

What it does per job: **one INSERT and one UPDATE**, nothing else.

* An HTTP front (``--port``) takes the very bytes of Chronoq's bulk path, ``POST
  /v1/jobs:batch`` with ``{"jobs": [{..., "payload": ...}, ...]}`` and ``X-User-ID``,
  inserts the batch with one multi-row ``INSERT`` (autocommit, fsynced like Chronoq's)
  and answers ``201`` with the new ids. A statement trigger ``NOTIFY``s the workers.
* Worker loops (``--workers``; each its own connection) claim up to ``--claim`` queued
  jobs with ``SELECT … FOR UPDATE SKIP LOCKED`` inside a transaction, execute them (a
  no-op: the payload is echoed as the result, like Chronoq's echo executor), record
  every outcome with one batched ``UPDATE … SET status = 'done'`` and commit. A worker
  that dies rolls back: its row locks go and the jobs are claimed again (at least once).
  Woken by ``LISTEN``; a 1 s poll is the fallback for a lost notification.
* ``--claim-mode update`` is the lease-style variant: the claim is an ``UPDATE … SET
  status = 'running' … RETURNING`` committed on its own, then the outcome ``UPDATE``
  (two updates per job, no transaction held while a job runs).

No framework on purpose (raw asyncio streams, uvloop as Chronoq uses it): it is the
floor, what any queue on PostgreSQL must at least pay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from typing import Any

import asyncpg

SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id text NOT NULL,
    payload text NOT NULL,
    status text NOT NULL DEFAULT 'queued',
    result text,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS floor_jobs_queued ON floor_jobs (id) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS floor_jobs_running ON floor_jobs (id) WHERE status = 'running';
CREATE OR REPLACE FUNCTION floor_notify() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_notify('floor_jobs', ''); RETURN NULL; END $$;
DROP TRIGGER IF EXISTS floor_jobs_notify ON floor_jobs;
CREATE TRIGGER floor_jobs_notify AFTER INSERT ON floor_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION floor_notify();
"""

INSERT = "INSERT INTO floor_jobs (user_id, payload) SELECT $1, unnest($2::text[]) RETURNING id"
CLAIM_LOCKED = (
    "SELECT id, payload FROM floor_jobs WHERE status = 'queued'"
    " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
)
CLAIM_UPDATE = (
    "UPDATE floor_jobs SET status = 'running' WHERE id IN (SELECT id FROM floor_jobs"
    " WHERE status = 'queued' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id, payload"
)
RECORD = (
    "UPDATE floor_jobs SET status = 'done', result = r.result, finished_at = now()"
    " FROM unnest($1::bigint[], $2::text[]) AS r(id, result) WHERE floor_jobs.id = r.id"
)


def _response(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


async def _handle(pool: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One keep-alive connection: ``POST /v1/jobs:batch`` and ``GET /health``."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if method == "GET" and path == "/health":
                writer.write(_response("200 OK", b'{"status":"ok"}'))
            elif method == "POST" and path == "/v1/jobs:batch":
                writer.write(await _submit(pool, headers.get("x-user-id", "anonymous"), body))
            else:
                writer.write(_response("404 Not Found", b'{"error":"not found"}'))
    finally:
        writer.close()


async def _submit(pool: Any, user: str, body: bytes) -> bytes:
    try:
        jobs = json.loads(body)["jobs"]
        payloads = [job["payload"] for job in jobs]
    except (ValueError, KeyError, TypeError):
        return _response("400 Bad Request", b'{"error":"expected {\\"jobs\\": [...]}"}')
    payloads = [p if isinstance(p, str) else json.dumps(p) for p in payloads]
    ids = await pool.fetch(INSERT, user, payloads)
    items = [{"job_id": str(row[0])} for row in ids]
    return _response("201 Created", json.dumps({"items": items}).encode())


async def _no_reset(conn: Any) -> None:
    """The front's connections keep no session state (autocommit inserts only): asyncpg's
    default reset would add four statements per request (Chronoq's pool skips it too)."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _worker(dsn: str, wake: asyncio.Event, claim: int, mode: str) -> None:
    """Claim, execute (no-op), record; wait for a notification when the queue ran dry."""
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            wake.clear()
            if mode == "update":
                rows = await conn.fetch(CLAIM_UPDATE, claim)
                if rows:
                    await conn.execute(RECORD, [r[0] for r in rows], [r[1] for r in rows])
            else:
                async with conn.transaction():
                    rows = await conn.fetch(CLAIM_LOCKED, claim)
                    if rows:  # the no-op: the payload is the result (an echo)
                        await conn.execute(RECORD, [r[0] for r in rows], [r[1] for r in rows])
            if len(rows) < claim:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)
    finally:
        await conn.close()


async def serve(args: argparse.Namespace) -> None:
    setup = await asyncpg.connect(args.dsn)
    try:
        async with setup.transaction():  # several processes start at once: one migrates
            await setup.execute("SELECT pg_advisory_xact_lock(7001)")
            await setup.execute(SCHEMA)
    finally:
        await setup.close()
    tasks: list[asyncio.Task[None]] = []
    server = None
    listener = None
    if args.workers:
        wakes = [asyncio.Event() for _ in range(args.workers)]
        listener = await asyncpg.connect(args.dsn)

        def wake_all(*_: object) -> None:
            for wake in wakes:
                wake.set()

        await listener.add_listener("floor_jobs", wake_all)
        for wake in wakes:
            tasks.append(asyncio.create_task(_worker(args.dsn, wake, args.claim, args.claim_mode)))
    if args.port:
        pool = await asyncpg.create_pool(
            args.dsn, min_size=1, max_size=args.connections, reset=_no_reset
        )
        server = await asyncio.start_server(
            lambda r, w: _handle(pool, r, w), args.host, args.port, backlog=1024, limit=1 << 22
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"floor ready: port={args.port} workers={args.workers}", flush=True)
    done = asyncio.create_task(stop.wait())
    await asyncio.wait([done, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if task.done() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        task.cancel()
    if server is not None:
        server.close()
    if listener is not None:
        await listener.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.floor_server", description=__doc__)
    p.add_argument("--dsn", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="HTTP front port (0: no front)")
    p.add_argument("--connections", type=int, default=4, help="front's pool size (4)")
    p.add_argument("--workers", type=int, default=0, help="worker loops in this process (0)")
    p.add_argument("--claim", type=int, default=1000, help="jobs per claim (1000)")
    p.add_argument("--claim-mode", choices=("locked", "update"), default="locked")
    args = p.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(args))


if __name__ == "__main__":
    main()
