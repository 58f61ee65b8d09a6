"""Containment of shell runs: a cgroup v2 group per run, else the parent-death signal.

Modes (``containment()`` decides once per process and logs which one it uses):

* ``cgroup``: root, and a writable cgroup v2 hierarchy (found in
  ``/proc/self/mountinfo``). Groups live at ``<mount><own group>/chronoq/w<pid>/r<n>``;
  each child enters its run's group itself before ``exec`` (preexec), so nothing
  it starts can be outside it, ``setsid`` included. Ending a run writes 1 to
  ``cgroup.kill`` (or, without it, SIGKILLs every pid in ``cgroup.procs`` until
  it is empty) and removes the group.
* ``pdeathsig``: anything else. The shell gets ``PR_SET_PDEATHSIG(SIGKILL)`` and
  the process-group kill is all there is; a child that leaves the group escapes.

In both modes a guard process holds the read end of a pipe whose write end only
the worker holds. When the worker dies, even by SIGKILL, the guard reads EOF and
kills what is left: the worker's whole cgroup (cgroup mode) or every process
group of a run still open (pdeathsig mode).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["Containment", "RunGroup", "containment", "find_cgroup2_mount"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def find_cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> Path | None:
    """The mount point of the cgroup v2 hierarchy, or None."""
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        left, sep, right = line.partition(" - ")
        if sep and right.split()[:1] == ["cgroup2"]:
            return Path(left.split()[4])
    return None


def _own_cgroup2_path() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:].strip().lstrip("/")
    return ""


def kill_cgroup(path: Path, *, within: float = 5.0) -> None:
    """Kill everything in the group ``path`` (and below), then remove it."""
    kill_file = path / "cgroup.kill"
    deadline = time.monotonic() + within
    while True:
        try:
            if kill_file.exists():
                kill_file.write_text("1")
            else:
                for pid in _pids_below(path):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        except FileNotFoundError:
            return
        try:
            for child in sorted(path.rglob("*"), key=lambda p: -len(p.parts)):
                if child.is_dir():
                    child.rmdir()
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                log.warning("cgroup %s still busy after %.0fs", path, within)
                return
            time.sleep(0.01)


def _pids_below(path: Path) -> list[int]:
    pids = []
    for procs in path.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids += [int(x) for x in procs.read_text().split()]
    return pids


_GUARD = r"""
import os, signal, sys, time
fd, cgroup = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
groups, buf = set(), b""
while True:
    data = os.read(fd, 4096)
    if not data:
        break
    buf += data
    *lines, buf = buf.split(b"\n")
    for line in lines:
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
if cgroup:
    sys.path[:0] = sys.argv[3:]
    from pathlib import Path
    from chronoq.executors.cgroup import kill_cgroup
    kill_cgroup(Path(cgroup), within=10.0)
"""


class RunGroup:
    """One run's containment: enter it in the child (``preexec``), kill it, release it."""

    def __init__(self, owner: Containment, path: Path | None) -> None:
        self._owner = owner
        self.path = path
        self._procs_fd = -1
        if path is not None:
            path.mkdir()
            self._procs_fd = os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        self.pgid = 0

    def preexec(self) -> None:
        """Runs in the child between fork and exec: join the cgroup, die with the parent."""
        if self._procs_fd >= 0:
            os.write(self._procs_fd, str(os.getpid()).encode())
        set_pdeathsig()

    def started(self, pid: int) -> None:
        if self._procs_fd >= 0:
            os.close(self._procs_fd)
            self._procs_fd = -1
        self.pgid = pid
        self._owner.tell(f"+{pid}\n")

    def kill(self) -> None:
        """SIGKILL the run's process group and, in cgroup mode, everything in its cgroup."""
        if self.pgid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signal.SIGKILL)
        if self.path is not None:
            with contextlib.suppress(OSError):
                (self.path / "cgroup.kill").write_text("1")

    def release(self) -> None:
        """Kill what is left and remove the group; the run is over."""
        if self._procs_fd >= 0:
            os.close(self._procs_fd)
            self._procs_fd = -1
        if self.path is not None:
            kill_cgroup(self.path)
        if self.pgid:
            self._owner.tell(f"-{self.pgid}\n")


def set_pdeathsig() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() == 1:  # the worker died before prctl took effect
        os._exit(137)


class Containment:
    """The process-wide containment mode and its guard; see the module docstring."""

    def __init__(self, root: Path | None) -> None:
        self.root = root  # the worker's own cgroup (w<pid>), or None in pdeathsig mode
        self.mode = "cgroup" if root is not None else "pdeathsig"
        self._counter = itertools.count()
        self._guard_fd = -1
        self._guard: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()

    def new_run(self) -> RunGroup:
        self._ensure_guard()
        path = None if self.root is None else self.root / f"r{next(self._counter)}"
        return RunGroup(self, path)

    def tell(self, line: str) -> None:
        if self._guard_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self._guard_fd, line.encode())

    def _ensure_guard(self) -> None:
        if self._guard is not None and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        read_fd, write_fd = os.pipe()
        src = str(Path(__file__).resolve().parents[2])
        try:
            self._guard = subprocess.Popen(
                [sys.executable, "-c", _GUARD, str(read_fd), str(self.root or ""), src],
                pass_fds=(read_fd,),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            log.warning("shell containment: no guard process (%s)", exc)
            os.close(write_fd)
            return
        finally:
            os.close(read_fd)
        self._guard_fd = write_fd
        _guards.append(self._guard)  # lives as long as the worker; never collected early

    def close(self) -> None:
        """Close the guard's pipe: it kills what is left (as on the worker's death) and exits."""
        if self._guard_fd >= 0:
            os.close(self._guard_fd)
            self._guard_fd = -1
        self._guard = None


_guards: list[subprocess.Popen[bytes]] = []
_containment: Containment | None = None


def containment(probe: Callable[[], Path | None] | None = None) -> Containment:
    """The process's containment (decided and logged once)."""
    global _containment
    if _containment is None or _containment._pid != os.getpid():
        root = (probe or _probe_cgroup)()
        _containment = Containment(root)
        if root is not None:
            log.info("shell containment: cgroup v2, one group per run under %s", root)
        else:
            log.info(
                "shell containment: PR_SET_PDEATHSIG + process group "
                "(no writable cgroup v2 hierarchy as root); children that leave "
                "the group can escape"
            )
    return _containment


def _probe_cgroup() -> Path | None:
    if os.geteuid() != 0:
        return None
    mount = find_cgroup2_mount()
    if mount is None:
        return None
    parent = mount / _own_cgroup2_path() / "chronoq"
    root = parent / f"w{os.getpid()}"
    try:
        _sweep(parent)
        if root.exists():
            kill_cgroup(root)
        root.mkdir(parents=True)
        probe = root / "probe"
        probe.mkdir()
        ok = os.access(probe / "cgroup.procs", os.W_OK)
        probe.rmdir()
    except OSError:
        return None
    if not ok:
        with contextlib.suppress(OSError):
            root.rmdir()
        return None
    return root


def _sweep(parent: Path) -> None:
    """Kill and remove the groups of workers that are gone (a guard that could not run)."""
    if not parent.is_dir():
        return
    for group in parent.iterdir():
        name = group.name
        if group.is_dir() and name.startswith("w") and name[1:].isdigit():
            try:
                os.kill(int(name[1:]), 0)
            except ProcessLookupError:
                kill_cgroup(group)
            except PermissionError:
                pass
