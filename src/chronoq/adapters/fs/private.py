"""Private files and folders: what Chronoq writes is readable by its own user only.

A shell job, a co-tenant on the host or a backup tool must not read the store or
the offloaded payloads through loose permissions. Every folder Chronoq owns is
``0700`` and every file ``0600`` whatever the process's umask: created with
those modes, and ``chmod``-ed again, since a umask can only remove bits and
folders made by an older version (or by hand) may be looser.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "private_dir", "private_file", "tighten"]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) if needed; make ``path`` itself ``0700``."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if missing; make it ``0600``. Its folder must exist."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return path


def tighten(path: Path) -> None:
    """``chmod 0600`` an existing file; nothing if it does not exist."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, PRIVATE_FILE)
