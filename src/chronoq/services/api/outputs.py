"""Offloaded run outputs, read back for ``GET /v1/jobs/{id}/runs/{run_id}/output``.

A worker puts an output above ``output_offload_bytes`` to the blob store and the run keeps
only its head and ``output_ref`` (``services.worker.offload``). The output route asks the
store for the reference first (owner-checked, like ``read_output``): with one, the text
comes from the blob store — an output is at most ``output_limit`` bytes (1 MiB by
default), so it is fetched whole and sent in slices; without one, the store's slices as
before. A blob store that is down is a 503 (``UnavailableError``), never the head passed
off as the whole output.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from chronoq.domain.jobs import BLOB_REF_PREFIX
from chronoq.errors import NotFoundError
from chronoq.services.api.deps import ApiDeps

CHUNK_BYTES = 65_536


async def offloaded_output(deps: ApiDeps, user: str, job_id: str, run_id: str) -> bytes | None:
    """The whole output of the run if it was offloaded; None if it is inline (or no such run
    of this user's job: the caller's inline path answers that)."""
    ref = await deps.store.output_ref(user, job_id, run_id)
    if ref is None:
        return None
    try:
        return await deps.ingest.blob.get(ref.removeprefix(BLOB_REF_PREFIX))
    except NotFoundError:  # deleted by retention between the two reads
        raise NotFoundError("the run's output is no longer kept") from None


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK_BYTES):
        yield data[start : start + CHUNK_BYTES]
