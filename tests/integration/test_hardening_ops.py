"""Issue 7, for operators: what a job, a co-tenant on the host and a new user meet.

* the data dir is ``0700`` and every file Chronoq writes in it ``0600``, whatever
  the umask it was started with;
* a ``cmd:`` job sees an allowlisted environment: none of the server's secrets;
* the server is not dumpable, so a job running as the server's own (unprivileged)
  user cannot read ``/proc/<server>/environ``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from .helpers import completed, make_client, new_user, submit, wait_runs

if TYPE_CHECKING:
    from .conftest import ServerFactory


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_and_files_are_private_whatever_the_umask(server_factory: ServerFactory) -> None:
    old = os.umask(0)  # the server inherits it: without care, files would be 0666
    try:
        server = server_factory(name="umask0")
    finally:
        os.umask(old)
    with make_client(server.url, new_user("modes")) as api:
        job_id = submit(api, payload="offloaded " + "x" * 4096)  # > 1 KiB: a blob file
        wait_runs(api, job_id, lambda runs: bool(completed(runs)), 20, "COMPLETED")

    data = server.data_dir
    entries = sorted(data.rglob("*"))
    names = {p.name for p in entries}
    assert {"chronoq.db", "chronoq.db-wal", "chronoq.db-shm", "blobs"} <= names, names
    blobs = [p for p in (data / "blobs").rglob("*") if p.is_file()]
    assert blobs, "the payload was not offloaded"
    assert _mode(data) == 0o700
    loose = {
        str(p.relative_to(data)): oct(_mode(p))
        for p in entries
        if _mode(p) != (0o700 if p.is_dir() else 0o600)
    }
    assert loose == {}
