"""SQLite only: several processes write one database file, taking turns.

``chronoq up --worker-processes`` writes one SQLite file from the parent and from each
worker process (and ``chronoq token`` may write beside a server). Each store thread
takes an exclusive ``flock`` on ``<database>-writer.lock`` around a transaction, so a
writer waits for the lock instead of failing or sleeping in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import sys
import textwrap
from pathlib import Path

from chronoq.adapters.sqlite import SqliteStore

from .helpers import make_job

ROOT = Path(__file__).resolve().parents[2]
BATCHES = 40
PER_BATCH = 50

_OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from chronoq.adapters.sqlite import SqliteStore
    from tests.contract.helpers import make_job

    async def main() -> None:
        store = SqliteStore(Path(sys.argv[1]))
        await store.start()
        for _ in range(int(sys.argv[2])):
            await store.insert_jobs([make_job(user_id="other") for _ in range(int(sys.argv[3]))])
        await store.close()

    asyncio.run(main())
    """
)


def count(path: Path, user: str) -> int:
    with sqlite3.connect(path) as conn:
        value: int = conn.execute(
            "SELECT count(*) FROM jobs WHERE user_id = ?", (user,)
        ).fetchone()[0]
        return value


async def test_two_processes_writing_at_once_both_commit_everything(tmp_path: Path) -> None:
    path = tmp_path / "chronoq.db"
    store = SqliteStore(path)
    await store.start()  # migrated before the other process opens it
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OTHER_PROCESS, str(path), str(BATCHES), str(PER_BATCH),
        cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(BATCHES):
            await store.insert_jobs([make_job(user_id="here") for _ in range(PER_BATCH)])
        _out, err = await asyncio.wait_for(other.communicate(), 60)
    finally:
        if other.returncode is None:
            other.kill()
            await other.wait()
        await store.close()
    assert other.returncode == 0, err.decode()
    assert count(path, "here") == count(path, "other") == BATCHES * PER_BATCH


async def test_a_writer_waits_for_the_lock_and_commits_once_it_is_free(tmp_path: Path) -> None:
    path = tmp_path / "chronoq.db"
    store = SqliteStore(path)
    await store.start()
    fd = os.open(f"{path}-writer.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process is committing
        insert = asyncio.ensure_future(store.insert_jobs([make_job(user_id="waiting")]))
        done, _ = await asyncio.wait([insert], timeout=0.3)
        assert not done, "the store wrote while another process held the writer lock"
        fcntl.flock(fd, fcntl.LOCK_UN)
        await asyncio.wait_for(insert, 10)
    finally:
        os.close(fd)
        await store.close()
    assert count(path, "waiting") == 1


async def test_the_writer_lock_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "chronoq.db"
    store = SqliteStore(path)
    await store.start()
    await store.close()
    assert os.stat(f"{path}-writer.lock").st_mode & 0o777 == 0o600
