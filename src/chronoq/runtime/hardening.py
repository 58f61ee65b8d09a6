"""Process hardening a node applies to itself at start.

``forbid_dumping`` marks the process non-dumpable (Linux ``prctl(PR_SET_DUMPABLE, 0)``):
the kernel then refuses ``/proc/<pid>/environ``, ``/proc/<pid>/mem`` and
``ptrace`` to every process without ``CAP_SYS_PTRACE``, the server's own user
included, and writes no core dump that would hold secrets. A ``cmd:`` job running
as an unprivileged user therefore cannot read the server's environment through
``/proc/$PPID/environ``. A job running as root still can (root has the
capability), which is why a root server runs jobs as ``nobody`` (``--shell-user``,
``executors/identity.py``).

The flag survives ``fork`` but is reset by ``execve`` of a normal binary, so job
processes are themselves dumpable; only the server is protected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = [
    "PR_GET_DUMPABLE", "PR_SET_DUMPABLE", "die_with_parent", "forbid_dumping", "is_dumpable",
]  # fmt: skip

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    result: int = libc.prctl(option, arg, 0, 0, 0)
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}) failed")
    return result


def forbid_dumping() -> bool:
    """Make this process non-dumpable. True when done; False where unsupported (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    _prctl(PR_SET_DUMPABLE, 0)
    return True


def is_dumpable() -> bool | None:
    """This process's dumpable flag, or None where it cannot be read (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    return _prctl(PR_GET_DUMPABLE) != 0


def die_with_parent(sig: int, parent_pid: int) -> bool:
    """Have the kernel send ``sig`` to this process when its parent exits. True when set;
    False where unsupported (not Linux). Exits at once if the parent is gone already
    (it may have died before the request took effect)."""
    if not sys.platform.startswith("linux"):
        return False
    _prctl(PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent_pid:
        raise SystemExit(f"chronoq: the parent process {parent_pid} is gone")
    return True
