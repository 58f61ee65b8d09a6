"""One submission path for ``POST /submit``, ``POST /v1/jobs`` and ``POST /v1/jobs:batch``:
validated specs in, jobs out, with idempotency keys honoured (``idempotency``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request

from chronoq.domain.jobs import Job, JobSpec
from chronoq.domain.limits import check_active
from chronoq.errors import ChronoqError, LimitExceededError, ValidationError
from chronoq.observability.metrics import LIMIT_ACTIVE_JOBS
from chronoq.services.api.deps import ApiDeps
from chronoq.services.api.idempotency import keyed_job_id, resolve
from chronoq.services.api.schemas_policies import idempotency_key

HEADER = "Idempotency-Key"
_HEADER_KEY = re.compile(r"[!-~]([ -~]*[!-~])?")
"""What a header can carry unchanged: printable ASCII, no space at either end."""


@dataclass(frozen=True, slots=True)
class Submitted:
    job: Job
    payload: str
    """The payload to answer with (the spec's: an offloaded one is not fetched back)."""
    replayed: bool
    """The key named an existing job: this is it, nothing new was made."""


def header_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header (at most one), checked like the field."""
    values = request.headers.getlist(HEADER)
    if len(values) > 1:
        raise ValidationError(f"send the {HEADER} header once", field=HEADER)
    if not values:
        return None
    key = idempotency_key(values[0], HEADER)
    if key is None or not _HEADER_KEY.fullmatch(key):
        raise ValidationError(
            f"{HEADER} must be printable ASCII (other keys go in the idempotency_key field)",
            field=HEADER,
        )
    return key


def check_batch_keys(specs: Sequence[JobSpec]) -> None:
    """A key names one job: twice in one batch is a 400 naming the second item."""
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        if spec.idempotency_key is None:
            continue
        if spec.idempotency_key in seen:
            raise ValidationError(
                "this idempotency_key is used by an earlier item of the batch",
                field=f"jobs[{index}].idempotency_key",
            )
        seen.add(spec.idempotency_key)


async def submit_specs(
    deps: ApiDeps,
    specs: Sequence[JobSpec],
    prefixes: Sequence[str] | None = None,
    *,
    key_field: str = "idempotency_key",
) -> list[Submitted]:
    """Make the new jobs durable (all or none) and return every spec's job: the new one,
    or the original of a replayed key. A key used with another body is a 409 naming it."""
    found = await resolve(deps.store, deps.submissions, specs, field=key_field, prefixes=prefixes)
    fresh = [spec for spec, job in zip(specs, found, strict=True) if job is None]
    made: list[Job] = []
    if fresh and deps.submissions is not None:
        await _check_buffered(deps, fresh)
    if fresh:
        # A submission log cannot refuse a taken id (its writer skips the entry): check
        # first whether a forgotten key's derived id is taken (the store refuses it below).
        random_ids = deps.submissions is not None and await _ids_taken(deps, fresh)
        try:
            made = await deps.ingest.submit(fresh, random_ids=random_ids)
        except ChronoqError:
            # A concurrent duplicate may have stored the same keyed job first: the store
            # refused our insert of its id. Ask again; the jobs it made are replays.
            if all(spec.idempotency_key is None for spec in fresh):
                raise
            fresh_prefixes = _fresh_prefixes(specs, found, prefixes)
            again = await resolve(
                deps.store, deps.submissions, fresh, field=key_field, prefixes=fresh_prefixes
            )
            rest = [spec for spec, job in zip(fresh, again, strict=True) if job is None]
            if len(rest) == len(fresh) and not await _ids_taken(deps, rest):
                raise
            stored = iter(await _submit_rest(deps, rest) if rest else [])
            made = [job if job is not None else next(stored) for job in again]
            replayed_now = {id(spec) for spec, job in zip(fresh, again, strict=True) if job}
            return _answer(specs, found, made, replayed_now)
    return _answer(specs, found, made, set())


async def _check_buffered(deps: ApiDeps, fresh: Sequence[JobSpec]) -> None:
    """Buffered ingestion answers before any store transaction (and its writer must never
    drop what was accepted): the active-jobs limit is checked against the store here.
    Jobs still in the log are not counted — the margin documented in docs/limits.md."""
    limit = deps.user_limits.max_active_jobs
    if limit <= 0:
        return
    user = fresh[0].user_id
    try:
        check_active({user: len(fresh)}, {user: await deps.store.active_jobs(user)}, limit)
    except LimitExceededError:
        deps.metrics.user_limit_refusals.labels(LIMIT_ACTIVE_JOBS).inc()
        raise


async def _ids_taken(deps: ApiDeps, specs: Sequence[JobSpec]) -> bool:
    """Whether a keyed spec's derived id names a stored job its key no longer finds: the
    key was forgotten (retention), so the same key and body make a new job now."""
    keyed = [keyed_job_id(spec) for spec in specs if spec.idempotency_key is not None]
    return bool(keyed) and bool(await deps.store.existing_job_ids(keyed))


async def _submit_rest(deps: ApiDeps, rest: Sequence[JobSpec]) -> list[Job]:
    """The specs no duplicate stored: again, with random ids if a derived id is taken."""
    return await deps.ingest.submit(rest, random_ids=await _ids_taken(deps, rest))


def _fresh_prefixes(
    specs: Sequence[JobSpec], found: Sequence[Job | None], prefixes: Sequence[str] | None
) -> list[str] | None:
    if prefixes is None:
        return None
    return [p for p, job in zip(prefixes, found, strict=True) if job is None]


def _answer(
    specs: Sequence[JobSpec],
    found: Sequence[Job | None],
    made: Sequence[Job],
    replayed_now: set[int],
) -> list[Submitted]:
    new = iter(made)
    out: list[Submitted] = []
    for spec, job in zip(specs, found, strict=True):
        if job is not None:
            out.append(Submitted(job, spec.payload, True))
            continue
        created = next(new)
        out.append(Submitted(created, spec.payload, id(spec) in replayed_now))
    return out
