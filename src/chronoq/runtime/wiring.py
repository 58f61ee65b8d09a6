"""Settings -> adapters. The only module that imports ``chronoq.adapters``."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from chronoq.adapters.fs import FsBlobStore
from chronoq.adapters.memory import MemoryNotifier
from chronoq.adapters.sqlite import SqliteStore
from chronoq.errors import ConfigError
from chronoq.ports.blob import BlobStore
from chronoq.ports.notify import Notifier
from chronoq.ports.store import Store
from chronoq.runtime.config import Settings


@dataclass(slots=True)
class Backends:
    store: Store
    blob: BlobStore
    notifier: Notifier
    lock: IO[str] | None

    async def start(self) -> None:
        await self.store.start()
        await self.blob.start()
        await self.notifier.start()

    async def close(self) -> None:
        await self.notifier.close()
        await self.blob.close()
        await self.store.close()
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def embedded_backends(settings: Settings) -> Backends:
    """SQLite + a blob folder + in-process notifications, in ``settings.data_dir``."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_data_dir(data_dir)
    return Backends(
        store=SqliteStore(data_dir / "chronoq.db", synchronous=settings.sqlite_synchronous),
        blob=FsBlobStore(data_dir / "blobs"),
        notifier=MemoryNotifier(),
        lock=lock,
    )


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on the data dir: a second scheduler on the same files is refused."""
    handle = open(data_dir / "chronoq.lock", "a+")  # noqa: SIM115 - held for the node's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(
            f"another Chronoq process is using {data_dir} (its lock is held); stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
