"""CPU accounting from /proc (Linux), without psutil."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the ``(comm)`` field, or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def process_tree_cpu(pid: int) -> tuple[float, float] | None:
    """(user, system) seconds of ``pid`` and its live descendants (+ their reaped children)."""
    children = _children_map()
    user = system = 0
    seen = False
    stack = [pid]
    while stack:
        current = stack.pop()
        fields = _stat_fields(current)
        if fields is None:
            continue
        seen = True
        # After "(comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt
        # cmajflt utime(11) stime(12) cutime(13) cstime(14)
        user += int(fields[11]) + int(fields[13])
        system += int(fields[12]) + int(fields[14])
        stack.extend(children.get(current, ()))
    return (user / _CLK_TCK, system / _CLK_TCK) if seen else None


def process_tree_io(pid: int) -> dict[str, int] | None:
    """Summed /proc/<pid>/io counters (wchar, write_bytes, syscw...) of the live process tree."""
    children = _children_map()
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


def system_cpu() -> SystemCpu:
    """Machine-wide CPU counters from the first line of /proc/stat."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return SystemCpu(busy_ticks=total - idle, total_ticks=total)


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """Server tree, load generator and machine CPU at one instant."""

    server_s: float | None
    client_s: float
    system: SystemCpu
    server_io: dict[str, int] | None = None
    server_sys_s: float | None = None
    """The kernel-mode part of ``server_s``."""

    @staticmethod
    def take(server_pid: int | None) -> CpuSnapshot:
        if server_pid is None:
            return CpuSnapshot(server_s=None, client_s=self_cpu_s(), system=system_cpu())
        server = process_tree_cpu(server_pid)
        return CpuSnapshot(
            server_s=None if server is None else server[0] + server[1],
            server_sys_s=None if server is None else server[1],
            client_s=self_cpu_s(),
            system=system_cpu(),
            server_io=process_tree_io(server_pid),
        )


def io_delta(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, int] | None:
    """Server process tree I/O between two snapshots (bytes written via syscalls, to disk...)."""
    if before.server_io is None or after.server_io is None:
        return None
    return {k: v - before.server_io.get(k, 0) for k, v in after.server_io.items()}


def cpu_delta(before: CpuSnapshot, after: CpuSnapshot, wall_s: float) -> dict[str, float | None]:
    """CPU spent between two snapshots: seconds, and cores used on average."""
    server = (
        after.server_s - before.server_s
        if after.server_s is not None and before.server_s is not None
        else None
    )
    server_sys = (
        after.server_sys_s - before.server_sys_s
        if after.server_sys_s is not None and before.server_sys_s is not None
        else None
    )
    client = after.client_s - before.client_s
    total = after.system.total_ticks - before.system.total_ticks
    busy = after.system.busy_ticks - before.system.busy_ticks
    ncpu = os.cpu_count() or 1
    return {
        "wall_s": wall_s,
        "server_cpu_s": server,
        "server_sys_cpu_s": server_sys,
        "client_cpu_s": client,
        "server_cores": server / wall_s if server is not None and wall_s > 0 else None,
        "client_cores": client / wall_s if wall_s > 0 else None,
        "machine_busy_fraction": busy / total if total > 0 else None,
        "machine_busy_cores": busy / total * ncpu if total > 0 else None,
        "other_cores": (
            busy / total * ncpu - (server or 0.0) / wall_s - client / wall_s
            if total > 0 and wall_s > 0
            else None
        ),
    }
