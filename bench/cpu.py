"""CPU accounting from /proc (Linux), without psutil.

A ``CpuSample`` holds, at one instant, the CPU seconds of each *part* of the system
under test (``server`` for ``chronoq up``; each role and ``postgres`` for a cluster),
this process's (the load generator's) and the machine's; ``cpu_between`` turns two
samples into seconds and average cores per part, plus what other processes used.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import children_map, proc_stat

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def trees_cpu(roots: Iterable[int]) -> dict[int, tuple[float, float]]:
    """(user, system) seconds of each root's live process tree, reaped children included.

    One scan of /proc for all roots; a root that is gone is absent from the result.
    """
    children = children_map()
    out: dict[int, tuple[float, float]] = {}
    for root in roots:
        user = system = 0
        seen = False
        stack = [root]
        while stack:
            pid = stack.pop()
            fields = proc_stat(pid)
            if fields is None:
                continue
            seen = True
            # utime(11) stime(12) cutime(13) cstime(14), in clock ticks
            user += int(fields[11]) + int(fields[13])
            system += int(fields[12]) + int(fields[14])
            stack.extend(children.get(pid, ()))
        if seen:
            out[root] = (user / _CLK_TCK, system / _CLK_TCK)
    return out


def tree_io(pid: int) -> dict[str, int] | None:
    """Summed /proc/<pid>/io counters (wchar, write_bytes, syscw...) of the live process tree."""
    children = children_map()
    totals: dict[str, int] = {}
    seen = False
    stack = [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, ()))
        try:
            text = Path(f"/proc/{current}/io").read_text()
        except OSError:
            continue
        seen = True
        for line in text.splitlines():
            key, _, value = line.partition(":")
            totals[key] = totals.get(key, 0) + int(value)
    return totals if seen else None


def self_cpu_s() -> float:
    """This process's CPU time (all threads), seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class SystemCpu:
    busy_ticks: int
    total_ticks: int

    @staticmethod
    def read() -> SystemCpu:
        """Machine-wide CPU counters from the first line of /proc/stat."""
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        values = [int(v) for v in first[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total = sum(values[:8])  # user nice system idle iowait irq softirq steal
        return SystemCpu(busy_ticks=total - idle, total_ticks=total)


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds so far of each part under test, of the load generator and the machine."""

    parts: dict[str, float]
    kernel: dict[str, float] = field(default_factory=dict)
    """The system-time share of ``parts`` (where measured)."""
    io: dict[str, int] | None = None
    """/proc I/O counters of the part under test (where measured)."""
    client_s: float = field(default_factory=self_cpu_s)
    system: SystemCpu = field(default_factory=SystemCpu.read)
    at: float = field(default_factory=time.perf_counter)

    @staticmethod
    def of_tree(name: str, pid: int | None, *, io: bool = False) -> CpuSample:
        """The process tree of ``pid`` as the one part ``name`` (no part if it is unknown)."""
        tree = trees_cpu([pid]).get(pid) if pid is not None else None
        if pid is None or tree is None:
            return CpuSample(parts={})
        return CpuSample({name: tree[0] + tree[1]}, {name: tree[1]}, tree_io(pid) if io else None)


def cpu_between(before: CpuSample, after: CpuSample) -> dict[str, Any]:
    """CPU spent between two samples: seconds and average cores per part, the load
    generator's, the machine's and other processes' (machine - parts - load generator)."""
    wall = after.at - before.at
    parts = {k: after.parts[k] - v for k, v in before.parts.items() if k in after.parts}
    kernel = {k: after.kernel[k] - v for k, v in before.kernel.items() if k in after.kernel}
    client = after.client_s - before.client_s
    total = after.system.total_ticks - before.system.total_ticks
    busy = after.system.busy_ticks - before.system.busy_ticks
    machine = busy / total * len(os.sched_getaffinity(0)) if total > 0 else None
    ours = sum(parts.values()) + client
    io = None
    if before.io is not None and after.io is not None:
        io = {k: v - before.io.get(k, 0) for k, v in after.io.items()}
    return {
        "wall_s": wall,
        "cpu_s": parts,
        "kernel_cpu_s": kernel,
        "cores": {k: v / wall for k, v in parts.items()} if wall > 0 else {},
        "parts_cores": sum(parts.values()) / wall if wall > 0 and parts else None,
        "client_cpu_s": client,
        "client_cores": client / wall if wall > 0 else None,
        "machine_busy_cores": machine,
        "other_cores": machine - ours / wall if machine is not None and wall > 0 else None,
        "io": io,
    }
