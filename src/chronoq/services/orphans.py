"""The leader's sweep of orphaned payload objects.

The api puts an offloaded payload (``payloads/<job_id>``) BEFORE it inserts the job
row — so no row ever points to a missing object — which means a crash, or a failed
insert, between the two leaves an object that no job references. The leader lists
``payloads/`` page by page, asks the store which payload references those jobs carry
(``JobStore.payload_refs_of``), and deletes the objects no job references, but only
objects older than ``min_age``.

A ``PATCH`` that changes an offloaded payload puts it under a new key
(``payloads/<job_id>.<rev>``) before the row changes, and leaves the old object to
this sweep rather than deleting it at once: a worker that claimed a run just before
the change still reads the payload it was given, for ``min_age``. A ``PATCH`` that
failed after its put leaves an object no row references; the sweep collects it too.

Why the age, and how large: an object younger than the longest put-to-insert window
may still get its row. Direct ingestion inserts within a second or two; with a
submission log (``--ingest log`` / ``redis://``) a job reaches the store only when a
writer moves it, so ``min_age`` must exceed the longest writer outage you tolerate.
It also absorbs clock skew between the blob store (which stamps the objects) and the
leader. The default (``blob_orphan_age``) is one hour.

Run outputs (``outputs/<run_id>-<attempt>``, put by workers above
``output_offload_bytes``) are swept the same way: an output put whose outcome was never
recorded — the worker died between the two, or the store refused the outcome as stale (the
lease had moved on) — is referenced by no run. The sweep asks the store which output
references those runs carry (``JobStore.output_refs_of``) and deletes old objects no run
references; retention deletes the referenced ones with their runs (``purge_finished``).
The same age applies: an outcome is recorded within seconds of its put.

Why not delete at once when an insert fails: the insert may have committed and only
its answer been lost; deleting then would leave a row pointing nowhere. The sweep
asks the store, so it never deletes a referenced object. Keys that are not
``payloads/<uuid>[.<uuid>]`` or ``outputs/<uuid>-<attempt>`` are never touched. The sweep resumes
where the last pass stopped, so a large bucket is covered over several passes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from chronoq.domain.clock import Clock
from chronoq.domain.jobs import BLOB_REF_PREFIX, OUTPUTS
from chronoq.ports.blob import BlobStore
from chronoq.ports.jobs import JobStore
from chronoq.services.base import log

PAYLOADS = "payloads/"
"""Where the api puts offloaded payloads (``services.api.ingest``: ``payloads/<job_id>``,
and ``payloads/<job_id>.<rev>`` for a changed one)."""
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_PAYLOAD = re.compile(rf"({_UUID})(?:\.{_UUID})?")
_OUTPUT = re.compile(rf"({_UUID})-[1-9][0-9]*")
"""``outputs/``'s names: ``<run_id>-<attempt>`` (``domain.jobs.output_key``)."""


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
        self._cursors = {PAYLOADS: "", OUTPUTS: ""}
        """Per prefix, the last key looked at; "" = from the start."""

    async def sweep(self) -> int:
        """One pass of up to ``pages_per_pass`` pages per prefix; how many objects it deleted."""
        cutoff = self._clock.now() - timedelta(seconds=self.min_age)
        payloads = await self._pass(PAYLOADS, cutoff)
        outputs = await self._pass(OUTPUTS, cutoff)
        if payloads or outputs:
            log.warning("orphan sweep: deleted %d payload and %d output objects nothing "
                        "references", payloads, outputs)  # fmt: skip
        return payloads + outputs

    async def _pass(self, prefix: str, cutoff: datetime) -> int:
        deleted = 0
        for _ in range(self._pages):
            entries = await self._blob.list_objects(
                prefix, start_after=self._cursors[prefix], limit=self._page
            )
            old = [e.key for e in entries if e.modified <= cutoff]
            for key in await self._unreferenced(prefix, old):
                await self._blob.delete(key)
                deleted += 1
            if len(entries) < self._page:
                self._cursors[prefix] = ""  # the listing is complete: start over next pass
                break
            self._cursors[prefix] = entries[-1].key
        return deleted

    async def _unreferenced(self, prefix: str, keys: list[str]) -> list[str]:
        """Those of ``keys`` (under ``prefix``) that no row references; others' names kept."""
        payloads = prefix == PAYLOADS
        owners: dict[str, str] = {}  # key -> the job (payloads) or run (outputs) it belongs to
        for key in keys:
            match = (_PAYLOAD if payloads else _OUTPUT).fullmatch(key[len(prefix) :])
            if match:
                owners[key] = match.group(1)
        if not owners:
            return []
        ids = list(set(owners.values()))
        refs_of = self._jobs.payload_refs_of if payloads else self._jobs.output_refs_of
        refs = await refs_of(ids)
        return [key for key in owners if BLOB_REF_PREFIX + key not in refs]
