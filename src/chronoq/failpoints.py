"""Failpoints: crash the process on purpose at the step boundaries where crashes hurt most.

Off unless ``CHRONOQ_FAILPOINTS`` names some (read by ``runtime.config``), e.g.
``CHRONOQ_FAILPOINTS=after_claim=kill`` or ``after_execution=kill@3`` (on the
third hit). Random kills rarely land in these windows; failpoints land there
every time, so the chaos suite can prove recovery from each (RELIABILITY R3, R4).

Points:

* ``after_claim``      picker: fires claimed and runs created (committed), workers not told yet
* ``after_dispatch``   worker: runs leased (committed), not started
* ``after_execution``  worker: the executor finished, the outcome not recorded yet
* ``after_result``     worker: outcomes recorded (committed)
* ``at_lease_renewal`` worker: about to extend its leases
* ``after_blob_put``   api: a payload is in the blob store, its job row not written yet
"""

from __future__ import annotations

import os
import signal

POINTS = frozenset(
    {
        "after_claim",
        "after_dispatch",
        "after_execution",
        "after_result",
        "at_lease_renewal",
        "after_blob_put",
    }
)
_armed: dict[str, list[int]] = {}  # point -> [hits left before it fires]


def configure(spec: str) -> None:
    """Arm the failpoints in ``spec`` (``name=kill[@N],...``); raise ValueError if malformed."""
    armed = parse(spec)
    _armed.clear()
    _armed.update({name: [nth] for name, nth in armed.items()})


def parse(spec: str) -> dict[str, int]:
    """``spec`` as {point: on which hit it fires}; raise ValueError if malformed."""
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        kind, _, nth = action.partition("@")
        if name not in POINTS or kind != "kill" or (nth and not nth.isdigit()):
            raise ValueError(
                f"bad failpoint {item!r}: use <point>=kill[@N], points: {', '.join(sorted(POINTS))}"
            )
        armed[name] = int(nth or 1)
    return armed


def hit(point: str) -> None:
    """Called at a step boundary; SIGKILLs this process if ``point`` is armed and due."""
    if not _armed:
        return
    left = _armed.get(point)
    if left is None:
        return
    left[0] -= 1
    if left[0] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
