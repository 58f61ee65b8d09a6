"""Ports: what the roles need from the outside world, in domain words."""

from chronoq.ports.blob import BlobStore
from chronoq.ports.notify import Notifier
from chronoq.ports.store import (
    Backlog,
    CancelResult,
    ClaimDueParams,
    ClaimRunsParams,
    JobPage,
    ListJobsParams,
    ReapParams,
    Store,
)

__all__ = [
    "Backlog",
    "BlobStore",
    "CancelResult",
    "ClaimDueParams",
    "ClaimRunsParams",
    "JobPage",
    "ListJobsParams",
    "Notifier",
    "ReapParams",
    "Store",
]
