"""Job control for :class:`chronoq.client.Client` (issue 9): pause, resume, trigger,
update, purge and the fire ledger. A mixin: ``Client`` supplies ``_object``."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from chronoq.domain.clock import format_rfc3339
from chronoq.errors import ValidationError

Json = dict[str, Any]

"""Keyword arguments of ``submit`` and ``update`` that are schedule policies."""
TIME_FIELDS = ("next_fire_at", "start_at", "end_at")

RESET: Any = object()
"""``update(end_at=RESET)``: send ``null`` (remove the field's value: no end, no timeout,
the policy's default). ``None`` means "leave it as it is"."""


def job_path(job_id: str) -> str:
    return "/v1/jobs/" + quote(job_id, safe="")


def times_as_text(body: Json, prefix: str = "", names: tuple[str, ...] = TIME_FIELDS) -> Json:
    """Render aware datetimes of ``names`` as RFC 3339; a naive one is refused."""
    for name in names:
        when = body.get(name)
        if isinstance(when, datetime):
            field = prefix + name
            try:
                body[name] = format_rfc3339(when)
            except ValueError:  # naive: its meaning would be a guess
                raise ValidationError(
                    f"{field} must be timezone-aware, got {when.isoformat()}", field=field
                ) from None
    return body


class ControlMixin:
    """The job control calls; see ``docs/api.md``."""

    def _object(self, method: str, path: str, **kwargs: Any) -> Json:
        raise NotImplementedError

    def pause(self, job_id: str) -> Json:
        """Pause a job (``POST /v1/jobs/{id}:pause``): no fires until :meth:`resume`."""
        return self._object("POST", job_path(job_id) + ":pause")

    def resume(self, job_id: str, *, catch_up: bool = False) -> Json:
        """Resume a paused job. The fires it missed are skipped (``paused``), or with
        ``catch_up`` handed to its misfire policy."""
        params = {"catch_up": "true"} if catch_up else None
        return self._object("POST", job_path(job_id) + ":resume", params=params)

    def trigger(self, job_id: str) -> Json:
        """A manual fire of a recurring job now; returns its run (``manual``).
        ``ConflictError`` for a finished or one-shot job."""
        return self._object("POST", job_path(job_id) + ":trigger")

    def update(self, job_id: str, **changes: Any) -> Json:
        """Change a job from its next fire (``PATCH /v1/jobs/{id}``): any of
        ``cron_schedule``, ``timezone``, ``next_fire_at`` (one-shot jobs), ``payload``,
        ``max_retries``, ``timeout_seconds``, ``queue``, ``priority`` (runs created after
        the change) and the policies of :meth:`Client.submit`.
        ``None`` leaves a field alone; :data:`RESET` sends ``null`` (reset)."""
        body = {k: (None if v is RESET else v) for k, v in changes.items() if v is not None}
        if not body:
            raise ValidationError("nothing to change: give at least one field")
        return self._object("PATCH", job_path(job_id), json=times_as_text(body))

    def delete(self, job_id: str, *, purge: bool = False) -> Json:
        """``DELETE /v1/jobs/{id}``: cancel (the job stays, ``CANCELLED``), or with
        ``purge`` delete it with its runs, outputs, ledger and blobs
        (returns ``{"job_id": ..., "purged": true}``)."""
        params = {"purge": "true"} if purge else None
        return self._object("DELETE", job_path(job_id), params=params)

    def purge(self, job_id: str) -> Json:
        """Delete a job and all it left (``DELETE /v1/jobs/{id}?purge=true``)."""
        return self.delete(job_id, purge=True)

    def fires(
        self,
        job_id: str,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        limit: int = 100,
    ) -> list[Json]:
        """The job's fire ledger (``GET /v1/jobs/{id}/fires``): each nominal fire in
        ``[start, end]`` (default: the last 24 hours) with its outcome, oldest first."""
        params: dict[str, Any] = {"limit": limit}
        for name, value in (("from", start), ("to", end)):
            if value is not None:
                params[name] = times_as_text({name: value}, names=(name,))[name]
        body = self._object("GET", job_path(job_id) + "/fires", params=params)
        items = body.get("items")
        return items if isinstance(items, list) else []
