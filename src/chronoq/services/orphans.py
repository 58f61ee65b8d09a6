"""The leader's sweep of orphaned payload objects.

The api puts an offloaded payload (``payloads/<job_id>``) BEFORE it inserts the job
row — so no row ever points to a missing object — which means a crash, or a failed
insert, between the two leaves an object that no job references. The leader lists
``payloads/`` page by page, asks the store which of those job ids exist, and deletes
the objects of the ones that do not, but only objects older than ``min_age``.

Why the age, and how large: an object younger than the longest put-to-insert window
may still get its row. Direct ingestion inserts within a second or two; with a
submission log (``--ingest log`` / ``redis://``) a job reaches the store only when a
writer moves it, so ``min_age`` must exceed the longest writer outage you tolerate.
It also absorbs clock skew between the blob store (which stamps the objects) and the
leader. The default (``blob_orphan_age``) is one hour.

Why not delete at once when an insert fails: the insert may have committed and only
its answer been lost; deleting then would leave a row pointing nowhere. The sweep
asks the store, so it never deletes a referenced object. Keys that are not
``payloads/<uuid>`` are never touched. The sweep resumes where the last pass stopped,
so a large bucket is covered over several passes.
"""

from __future__ import annotations

import re
from datetime import timedelta

from chronoq.domain.clock import Clock
from chronoq.ports.blob import BlobStore
from chronoq.ports.jobs import JobStore
from chronoq.services.base import log

PAYLOADS = "payloads/"
"""Where the api puts offloaded payloads (``services.api.ingest``: ``payloads/<job_id>``)."""
_JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class OrphanSweep:
    def __init__(
        self,
        jobs: JobStore,
        blob: BlobStore,
        clock: Clock,
        *,
        min_age: float,
        page: int = 1000,
        pages_per_pass: int = 20,
    ) -> None:
        self._jobs = jobs
        self._blob = blob
        self._clock = clock
        self.min_age = min_age
        self._page = page
        self._pages = pages_per_pass
        self._cursor = ""
        """The last key looked at; "" = from the start."""

    async def sweep(self) -> int:
        """One pass of up to ``pages_per_pass`` pages; returns how many objects it deleted."""
        cutoff = self._clock.now() - timedelta(seconds=self.min_age)
        deleted = 0
        for _ in range(self._pages):
            entries = await self._blob.list_objects(
                PAYLOADS, start_after=self._cursor, limit=self._page
            )
            old: dict[str, str] = {}
            for entry in entries:
                job_id = entry.key[len(PAYLOADS) :]
                if entry.modified <= cutoff and _JOB_ID.fullmatch(job_id):
                    old[job_id] = entry.key
            if old:
                existing = await self._jobs.existing_job_ids(list(old))
                for job_id, key in old.items():
                    if job_id not in existing:
                        await self._blob.delete(key)
                        deleted += 1
            if len(entries) < self._page:
                self._cursor = ""  # the listing is complete: start over next pass
                break
            self._cursor = entries[-1].key
        if deleted:
            log.warning("orphan sweep: deleted %d payload objects no job references", deleted)
        return deleted
