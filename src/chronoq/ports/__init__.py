"""Ports: what the roles need from the outside world, in domain words.

Roles depend on these Protocols, never on adapters: ``JobStore`` (jobs, runs,
history), ``Dispatch`` (due fires -> leased runs -> outcomes), ``Coordination``
(leader lease, membership, shard assignment), ``BlobStore``, ``SubmissionLog``
and ``Notifier`` (hints). ``Store`` is an adapter that is both a JobStore and
a Dispatch. Each port's contract is in its module docstring and is checked by
one suite in ``tests/contract`` that every adapter runs.
"""

from chronoq.ports.blob import BlobStore
from chronoq.ports.coordination import Coordination, Leadership, Member, ShardAssignment
from chronoq.ports.dispatch import (
    ClaimDueParams,
    ClaimRunsParams,
    Dispatch,
    LeaseRenewal,
    ReapParams,
    ReleaseParams,
)
from chronoq.ports.jobs import Backlog, CancelResult, JobPage, JobStore, ListJobsParams
from chronoq.ports.notify import Notifier
from chronoq.ports.store import Store
from chronoq.ports.submissions import LoggedJob, SubmissionLog

__all__ = [
    "Backlog",
    "BlobStore",
    "CancelResult",
    "ClaimDueParams",
    "ClaimRunsParams",
    "Coordination",
    "Dispatch",
    "JobPage",
    "JobStore",
    "Leadership",
    "LeaseRenewal",
    "ListJobsParams",
    "LoggedJob",
    "Member",
    "Notifier",
    "ReapParams",
    "ReleaseParams",
    "ShardAssignment",
    "Store",
    "SubmissionLog",
]
