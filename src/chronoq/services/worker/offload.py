"""Large run outputs go to the blob store before their outcome is recorded (issue 8).

An output larger than ``output_offload_bytes`` UTF-8 bytes is put whole to the node's
blob store under ``outputs/<run_id>-<attempt>`` (``domain.jobs.output_key``); the outcome
then carries only the head of the output (``OUTPUT_HEAD_CHARS``, what a run list shows)
and ``output_ref``. The store's rows stay small and the api streams the blob back.

Order: put first, then record. A crash between the two (or an outcome the store refuses
as stale) leaves an object no run references, which the leader's orphan sweep collects
(``services.orphans``); a run never references a missing object.

The blob store must never cost an outcome: if the put fails (S3 down, a full disk), the
output stays inline as it would without offloading — the store keeps it whole, up to
``output_limit`` — and the failure is logged (the first one, then every hundredth).

Only executed attempts are offloaded (``execution.execute``): the inline echo no-op
(``execute_inline``) answers at most its inline payload (≤ 1 KiB) plus a prefix, which
stays in the store even with the smallest threshold (1024).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from chronoq.domain.jobs import BLOB_REF_PREFIX, OUTPUT_HEAD_CHARS, RunOutcome, output_key
from chronoq.ports.blob import BlobStore
from chronoq.services.base import log

_LOG_EVERY = 100


@dataclass(slots=True)
class OffloadFailures:
    """Puts that failed on this worker (their outputs stayed inline); for rate-limited logs."""

    count: int = 0


async def offload_output(
    blob: BlobStore, outcome: RunOutcome, threshold: int, failures: OffloadFailures
) -> RunOutcome:
    """``outcome`` with its output in the blob store if larger than ``threshold`` bytes
    (0 = never); unchanged if not, or if the put failed."""
    text = outcome.output
    # A character is 1-4 UTF-8 bytes: only encode when the size could be over the line.
    if threshold <= 0 or outcome.output_ref is not None or len(text) * 4 <= threshold:
        return outcome
    data = text.encode()
    if len(data) <= threshold:
        return outcome
    key = output_key(outcome.run_id, outcome.attempt)
    try:
        await blob.put(key, data)
    except Exception as exc:  # any failure: keep the output inline, never lose the outcome
        failures.count += 1
        if failures.count % _LOG_EVERY == 1:
            log.warning("worker: output of run %s kept inline, the blob put failed (%d so far): %s",
                        outcome.run_id, failures.count, exc)  # fmt: skip
        return outcome
    return dataclasses.replace(
        outcome, output=text[:OUTPUT_HEAD_CHARS], output_ref=BLOB_REF_PREFIX + key
    )
