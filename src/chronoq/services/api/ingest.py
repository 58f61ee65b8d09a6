"""Turning validated submissions into durable jobs (the api role's write path).

Order matters for "nothing accepted is lost, nothing points nowhere": big
payloads are put in the blob store first (durably), then the rows are
written through the writer; only then does the caller answer 201. Objects whose rows
never come (a crash in between, a failed insert) are deleted by the leader's orphan
sweep (``services.orphans``); the blob store counts its own calls (``blob_metrics``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from chronoq import failpoints
from chronoq.domain.clock import Clock
from chronoq.domain.fire_now import fire_at_insert
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import BLOB_REF_PREFIX, OFFLOAD_THRESHOLD, Job, JobSpec, Run, shard_of
from chronoq.domain.policies import first_fire_at
from chronoq.domain.states import JobStatus
from chronoq.errors import LimitExceededError, UnavailableError
from chronoq.observability.metrics import LIMIT_ACTIVE_JOBS, Metrics
from chronoq.ports.blob import BlobStore
from chronoq.services.api.idempotency import keyed_job_id
from chronoq.services.base import log
from chronoq.services.writer import Writer


@dataclass(slots=True)
class Ingest:
    writer: Writer
    blob: BlobStore
    clock: Clock
    metrics: Metrics
    shard_count: int
    fire_at_insert: bool = False
    """Claim a job's first fire in its insert when it is due already (``domain.fire_now``):
    only with direct ingestion and no picker-side limit on fires (rate cap, per-user fires
    limit), which such a fire would not pass through."""

    async def submit(self, specs: Sequence[JobSpec], *, random_ids: bool = False) -> list[Job]:
        """Make the jobs durable and return them as accepted; all or none. ``random_ids``:
        new ids even for keyed specs (their derived id is taken by a job whose key was
        forgotten).

        A job fired at insert is returned as accepted (pending, ``next_fire_at`` its due
        time); the store keeps it fired (``fire_now.stored_fired``). The answer describes
        the submission, the same whether its first fire was claimed here or by a picker
        a moment later."""
        now = self.clock.now()
        jobs = [self._new_job(spec, now, random_ids) for spec in specs]
        runs = _fired(jobs, now) if self.fire_at_insert else []
        offloads = [(job, spec) for job, spec in zip(jobs, specs, strict=True) if job.payload_ref]
        if offloads:
            await self._offload(offloads)
            failpoints.hit("after_blob_put")
        started = self.clock.monotonic()
        try:
            await self.writer.write(jobs, runs)
        except LimitExceededError:
            self.metrics.user_limit_refusals.labels(LIMIT_ACTIVE_JOBS).inc()
            raise
        self.metrics.jobs_created.inc(len(jobs))
        if runs:  # handed to dispatch by this commit, as a picker's claim would
            self.metrics.jobs_enqueued.inc(len(runs))
            self.metrics.enqueue_duration.observe(self.clock.monotonic() - started)
        return jobs

    def _new_job(self, spec: JobSpec, now: datetime, random_id: bool = False) -> Job:
        # A keyed submission's id is derived from it: duplicates collapse onto one id.
        keyed = spec.idempotency_key is not None and not random_id
        job_id = keyed_job_id(spec) if keyed else new_id()
        fires_at = first_fire_at(
            cron_schedule=spec.cron_schedule,
            timezone=spec.timezone,
            next_fire_at=spec.next_fire_at,
            policies=spec.policies,
            now=now,
        )
        # No fire left (end_at passed between validation and now): nothing will ever run.
        ended = fires_at is None and spec.cron_schedule is not None
        encoded_size = len(spec.payload.encode())
        offload = encoded_size > OFFLOAD_THRESHOLD
        return Job(
            job_id=job_id,
            user_id=spec.user_id,
            project_id=spec.project_id,
            payload=None if offload else spec.payload,
            payload_ref=f"{BLOB_REF_PREFIX}payloads/{job_id}" if offload else None,
            payload_size=encoded_size,
            cron_schedule=spec.cron_schedule,
            timezone=spec.timezone,
            next_fire_at=fires_at,
            shard_id=shard_of(job_id, self.shard_count),
            status=JobStatus.COMPLETED if ended else JobStatus.PENDING,
            max_retries=spec.max_retries,
            timeout_seconds=spec.timeout_seconds,
            created_at=now,
            updated_at=now,
            policies=spec.policies,
            idempotency_key=spec.idempotency_key,
            request_hash=spec.request_hash,
            queue=spec.queue,
            priority=spec.priority,
        )

    async def _offload(self, items: list[tuple[Job, JobSpec]]) -> None:
        """Put every payload, or none: 503 (``UnavailableError``) and no row if one fails."""
        keys = [blob_key(job) for job, _spec in items]
        results = await asyncio.gather(
            *(
                self.blob.put(key, spec.payload.encode())
                for key, (_job, spec) in zip(keys, items, strict=True)
            ),
            return_exceptions=True,
        )
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is None:
            return
        # No insert was attempted, so the objects that did get put are nobody's: remove
        # them now (best effort; the leader's orphan sweep collects whatever is left).
        # Not a keyed job's: its id (and key) is shared with its replays, one of which may
        # be stored already; the sweep deletes that object only if no job has the id.
        put = [
            key
            for key, (job, _spec), result in zip(keys, items, results, strict=True)
            if result is None and job.idempotency_key is None
        ]
        await asyncio.gather(*(self.blob.delete(key) for key in put), return_exceptions=True)
        raise UnavailableError(f"the payload store is unavailable: {failed}") from failed

    async def offload_changed(self, job_id: str, payload: str) -> str | None:
        """A changed payload (``PATCH``) put to the blob store if over the threshold: its
        reference, or None (kept inline). A new key per change (``payloads/<id>.<rev>``),
        so the old object stays for runs claimed before the change; the leader's orphan
        sweep deletes whichever of the two no job references once it is old enough."""
        if len(payload.encode()) <= OFFLOAD_THRESHOLD:
            return None
        key = f"payloads/{job_id}.{new_id()}"
        try:
            await self.blob.put(key, payload.encode())
        except Exception as exc:
            raise UnavailableError(f"the payload store is unavailable: {exc}") from exc
        return BLOB_REF_PREFIX + key

    async def delete_refs(self, refs: Sequence[str | None]) -> None:
        """Delete the blobs of these references (best effort: a failure is logged; the
        rows no longer point at them)."""
        keys = [ref.removeprefix(BLOB_REF_PREFIX) for ref in refs if ref]
        results = await asyncio.gather(
            *(self.blob.delete(key) for key in keys), return_exceptions=True
        )
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("api: deleting blob %s failed: %s", key, result)

    async def load_payload(self, job: Job) -> str:
        """The original payload of a job, fetched back from the blob store if offloaded."""
        if job.payload is not None or job.payload_ref is None:
            return job.payload or ""
        data = await self.blob.get(blob_key(job))
        return data.decode()


def blob_key(job: Job) -> str:
    assert job.payload_ref is not None
    return job.payload_ref.removeprefix(BLOB_REF_PREFIX)


def _fired(jobs: list[Job], now: datetime) -> list[Run]:
    """The runs of the jobs whose first fire is claimed in their insert."""
    return [run for job in jobs if (run := fire_at_insert(job, now)) is not None]
