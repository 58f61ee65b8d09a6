"""The worker role: leases runs, executes them, records outcomes."""

from chronoq.services.worker.loop import Worker, WorkerConfig

__all__ = ["Worker", "WorkerConfig"]
