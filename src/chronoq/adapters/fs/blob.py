"""``FsBlobStore``: the Blob port over a local folder.

``put`` writes a temporary file, fsyncs it and renames it into place, so a row
that points at a key never sees a torn object, even after ``kill -9``. Folders
are ``0700`` and objects ``0600`` whatever the umask (``private``).
"""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from chronoq.adapters.fs.private import PRIVATE_DIR, PRIVATE_FILE, private_dir
from chronoq.errors import NotFoundError, ValidationError
from chronoq.ports.blob import BlobEntry

_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,250}$")


class FsBlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    async def start(self) -> None:
        private_dir(self._root)

    async def close(self) -> None:
        return None

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, self._path(key), data)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFoundError(f"blob {key!r} not found") from None

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    async def list_objects(
        self, prefix: str, *, start_after: str = "", limit: int = 1000
    ) -> list[BlobEntry]:
        return await asyncio.to_thread(self._list, prefix, start_after, limit)

    def _list(self, prefix: str, start_after: str, limit: int) -> list[BlobEntry]:
        """Walks the folder under the prefix's directory part (the embedded scale; sorted
        here, since the file system has no key order)."""
        top = self._root / prefix.rpartition("/")[0]
        found: list[tuple[str, Path]] = []
        for folder, _dirs, files in os.walk(top):
            for name in files:
                path = Path(folder) / name
                key = path.relative_to(self._root).as_posix()
                if key.startswith(prefix) and key > start_after:
                    found.append((key, path))
        found.sort()
        entries: list[BlobEntry] = []
        for key, path in found[:limit]:
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue  # deleted meanwhile
            entries.append(BlobEntry(key, datetime.fromtimestamp(mtime, UTC)))
        return entries

    def _path(self, key: str) -> Path:
        if not _SAFE_KEY.match(key) or ".." in key:
            raise ValidationError(f"invalid blob key {key!r}")
        return self._root / key

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        # A name of its own per put: two puts of one key at once (duplicate submissions
        # under one idempotency key share their job id, so their payload key) must not
        # rename each other's temporary file away.
        tmp = path.with_name(f"{path.name}.{os.getpid()}-{os.urandom(6).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        os.fchmod(fd, PRIVATE_FILE)  # an old .tmp may be looser; the umask may be 0
        with open(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
