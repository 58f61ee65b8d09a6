"""How a job settles when one of its runs ends or leaves RUNNING (``JobStates``).

Shared by every transaction that ends runs: ``complete_runs``, ``reap_lost`` and
``release_runs`` (``plans``), and a run refused at its start (``starts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from chronoq.domain.states import (
    JOB_TERMINAL,
    RUN_TERMINAL,
    JobStatus,
    RunStatus,
    job_status_after_run,
)

_TERMINAL_JOB = frozenset(s.value for s in JOB_TERMINAL)


class JobStates:
    """The locked jobs as the writes of a batch move them, one after another: status and
    overlap bookkeeping (rows of ``sql.SETTLE_COLUMNS``).

    Mirrors the embedded store, which settles each job once per run, in order: a
    terminal or PAUSED job stays; a recurring job whose schedule has ended (no next or
    held fire) is COMPLETED once a run of it ends; and when the run that ends (or
    leaves RUNNING) is the job's running run, the run buffered behind it is released.
    """

    def __init__(self, rows: Sequence[Any]) -> None:
        self.status: dict[str, str] = {}
        self.recurring: dict[str, bool] = {}
        self.ended: dict[str, bool] = {}
        self.running: dict[str, str | None] = {}
        self.buffered: dict[str, str | None] = {}
        for job_id, status, recurring, ended, running, buffered in rows:
            key = str(job_id)
            if key in self.status:
                continue
            self.status[key] = status
            self.recurring[key] = recurring
            self.ended[key] = ended
            self.running[key] = None if running is None else str(running)
            self.buffered[key] = None if buffered is None else str(buffered)
        self._changed: dict[str, datetime | None] = {}
        self.released: dict[str, datetime | None] = {}
        """Buffered runs released (available at the value), to apply if still QUEUED."""

    def behind(self, run_ids: Sequence[str]) -> list[str]:
        """The buffered runs of the jobs whose running run is one of ``run_ids``: they are
        released if it ends, so the caller locks them with those runs."""
        ids = set(run_ids)
        return [
            buffered
            for job_id, buffered in self.buffered.items()
            if buffered is not None and self.running[job_id] in ids
        ]

    def touch(self, job_id: str) -> None:
        """Its bookkeeping changed (not its status)."""
        self._changed.setdefault(job_id, None)

    def settle(
        self, job_id: str, run_status: RunStatus, at: datetime | None = None, run_id: str = ""
    ) -> None:
        """The job after its run ``run_id`` reached ``run_status`` (``job_status_after_run``)."""
        self._free(job_id, run_id, at)
        status = self.status[job_id]
        if status in _TERMINAL_JOB or status == JobStatus.PAUSED:
            return
        recurring = self.recurring[job_id]
        new = job_status_after_run(run_status, recurring=recurring)
        if recurring and self.ended[job_id] and run_status in RUN_TERMINAL:
            new = JobStatus.COMPLETED  # its schedule has ended: nothing more will run
        self.status[job_id] = new.value
        self._changed[job_id] = at

    def requeued(self, job_id: str, at: datetime | None = None, run_id: str = "") -> None:
        """One of its runs went back to the queue: a RUNNING job waits again (PENDING)."""
        self._free(job_id, run_id, at)
        if self.status[job_id] == JobStatus.RUNNING:
            self.status[job_id] = JobStatus.PENDING.value
            self._changed[job_id] = at

    def _free(self, job_id: str, run_id: str, at: datetime | None) -> None:
        if not run_id or self.running[job_id] != run_id:
            return
        self.running[job_id] = None
        buffered = self.buffered[job_id]
        if buffered is not None:
            self.released[buffered] = at
            self.buffered[job_id] = None
        self.touch(job_id)

    def changes(self) -> list[list[Any]]:
        """Changed jobs: ids, statuses, when (None: bookkeeping only), running, buffered."""
        ids = list(self._changed)
        return [
            ids,
            [self.status[i] for i in ids],
            [self._changed[i] for i in ids],
            [self.running[i] for i in ids],
            [self.buffered[i] for i in ids],
        ]
