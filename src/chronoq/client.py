"""A small synchronous Python client for the Chronoq HTTP API (``/v1``).

::

    from chronoq import Client

    with Client("http://127.0.0.1:8080", user_id="alice") as client:
        job = client.submit("reports", "cmd:make report", cron_schedule="0 7 * * *")
        for run in client.runs(job["job_id"]):
            print(run["status"], run["output"])

Jobs and runs are returned as the server's JSON objects (plain ``dict``); see
``docs/api.md``. Errors raise :mod:`chronoq.errors` exceptions carrying the
server's message: 400 -> ``ValidationError`` (``ScheduleError`` for a bad
``cron_schedule`` or ``timezone``) with ``field``, 403 -> ``ForbiddenError``,
404 -> ``NotFoundError``, 409 -> ``ConflictError``, 413 ->
``PayloadTooLargeError``, 429 -> ``LimitExceededError`` with ``code``
(``too_many_active_jobs``, ``too_many_fires``: a per-user limit, docs/limits.md;
``too_many_failures``: failed tokens) and ``retry_after`` (seconds, from ``Retry-After``),
503 or an unreachable server -> ``UnavailableError``, anything else (401: no or a bad
token) -> ``ChronoqError``.

httpx is imported when the first ``Client`` is made, so ``import chronoq``
stays cheap for processes that never talk HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from chronoq.client_control import RESET, ControlMixin, job_path, times_as_text
from chronoq.client_live import LiveMixin
from chronoq.domain.clock import format_rfc3339
from chronoq.domain.policies import POLICY_NAMES
from chronoq.errors import (
    ChronoqError,
    ConflictError,
    ForbiddenError,
    LimitExceededError,
    NotFoundError,
    PayloadTooLargeError,
    ScheduleError,
    UnavailableError,
    ValidationError,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_URL", "RESET", "Client"]

DEFAULT_URL = "http://127.0.0.1:8080"
MAX_PAGE = 1000  # the server's upper bound for ``limit``

_BY_STATUS: dict[int, type[ChronoqError]] = {
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    503: UnavailableError,
}
_SCHEDULE_FIELDS = ("cron_schedule", "timezone")

Json = dict[str, Any]


class Client(ControlMixin, LiveMixin):
    """A connection to one Chronoq server, acting as one user: ``token`` (a server with
    ``--auth token``: sent as ``Authorization: Bearer``, the token decides the user) or
    ``user_id`` (sent as ``X-User-ID``, what a server in header mode trusts).

    Thread-safe for concurrent calls (httpx's client is); close it with
    :meth:`close` or use it as a context manager.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        user_id: str = "default",
        timeout: float = 10.0,
        *,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        from chronoq import __version__

        self.url = url.rstrip("/")
        self.user_id = user_id
        headers = {"X-User-ID": user_id, "User-Agent": f"chronoq-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token.strip()}"
        try:
            self._http = httpx.Client(
                base_url=self.url, timeout=timeout, transport=transport, headers=headers
            )
        except httpx.InvalidURL as exc:
            raise ValidationError(f"invalid server URL {url!r}: {exc}", field="url") from exc

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, user_id={self.user_id!r})"

    # -- jobs ----------------------------------------------------------------

    def submit(
        self,
        project_id: str,
        payload: str,
        *,
        cron_schedule: str | None = None,
        next_fire_at: datetime | str | None = None,
        max_retries: int | None = None,
        timeout_seconds: float | None = None,
        timezone: str | None = None,
        idempotency_key: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        **policies: Any,
    ) -> Json:
        """Create one job (``POST /v1/jobs``) and return the job object.

        ``next_fire_at`` (and ``start_at`` / ``end_at``) is an aware ``datetime`` or an
        RFC 3339 string; a naive ``datetime`` is refused. Schedule policies are keyword
        arguments: ``overlap``, ``misfire``, ``catch_up_window_seconds``,
        ``start_deadline_seconds``, ``jitter_seconds``, ``start_at``, ``end_at``,
        ``max_fires`` (docs/policies.md). ``queue`` (default ``default``) says which
        workers take its runs, ``priority`` (-1000..1000, default 0; higher first) their
        order (docs/queues.md). With ``idempotency_key``, a repeated call with
        the same arguments returns the original job; other arguments under the same key
        raise ``ConflictError``. Arguments left ``None`` are not sent, so the server's
        defaults apply.
        """
        unknown = sorted(set(policies) - set(POLICY_NAMES))
        if unknown:
            raise TypeError(f"submit() got unexpected keyword arguments {unknown}")
        spec = {
            "project_id": project_id,
            "payload": payload,
            "cron_schedule": cron_schedule,
            "next_fire_at": next_fire_at,
            "max_retries": max_retries,
            "timeout_seconds": timeout_seconds,
            "timezone": timezone,
            "idempotency_key": idempotency_key,
            "queue": queue,
            "priority": priority,
            **policies,
        }
        return self._object("POST", "/v1/jobs", json=_spec_body(spec))

    def submit_batch(self, specs: Sequence[Mapping[str, Any]]) -> list[Json]:
        """Create 1–1000 jobs at once, all or nothing (``POST /v1/jobs:batch``).

        Each spec is a mapping with the keyword names of :meth:`submit`
        (``project_id`` and ``payload`` required). An error's ``field`` names
        the item, e.g. ``jobs[3].cron_schedule``.
        """
        body = {"jobs": [_spec_body(spec, prefix=f"jobs[{i}].") for i, spec in enumerate(specs)]}
        return _items(self._object("POST", "/v1/jobs:batch", json=body))

    def jobs(
        self,
        status: str | Sequence[str] | None = None,
        project_id: str | None = None,
        limit: int = 100,
        *,
        kind: str | None = None,
        queue: str | None = None,
        search: str | None = None,
    ) -> list[Json]:
        """The caller's jobs, oldest first: at most ``limit`` of them.

        Filters (all optional, combined with AND): ``status`` one status or several,
        ``project_id`` exact, ``kind`` ``once`` or ``recurring``, ``queue`` exact,
        ``search`` a job id prefix or a substring of the project id. Each job carries
        ``last_run`` and ``recent_run_statuses``. Follows the server's cursors as needed,
        so ``limit`` may exceed the per-page maximum of 1000. Use :meth:`iter_jobs` to walk
        every job lazily, or :meth:`jobs_page` to paginate by hand.
        """
        if limit < 1:
            raise ValidationError(f"limit must be >= 1, got {limit}", field="limit")
        found: list[Json] = []
        cursor: str | None = None
        while len(found) < limit:
            page, cursor = self.jobs_page(
                status,
                project_id,
                min(limit - len(found), MAX_PAGE),
                cursor,
                kind=kind,
                queue=queue,
                search=search,
            )
            found.extend(page)
            if cursor is None or not page:
                break
        return found[:limit]

    def iter_jobs(
        self,
        status: str | Sequence[str] | None = None,
        project_id: str | None = None,
        page_size: int = 100,
        *,
        kind: str | None = None,
        queue: str | None = None,
        search: str | None = None,
    ) -> Iterator[Json]:
        """Every matching job, oldest first, fetching one page at a time."""
        cursor: str | None = None
        while True:
            page, cursor = self.jobs_page(
                status, project_id, page_size, cursor, kind=kind, queue=queue, search=search
            )
            yield from page
            if cursor is None or not page:
                return

    def jobs_page(
        self,
        status: str | Sequence[str] | None = None,
        project_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        *,
        kind: str | None = None,
        queue: str | None = None,
        search: str | None = None,
    ) -> tuple[list[Json], str | None]:
        """One page of ``GET /v1/jobs``: ``(items, next_cursor)``; the cursor is None at the end."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        params: dict[str, str | int | None] = {
            "project_id": project_id,
            "kind": kind,
            "queue": queue,
            "q": search,
            "limit": limit,
            "cursor": cursor,
        }
        query: list[tuple[str, str | int]] = [("status", s) for s in statuses]
        query += [(key, value) for key, value in params.items() if value is not None]
        body = self._object("GET", "/v1/jobs", params=query)
        next_cursor = body.get("next_cursor")
        return _items(body), next_cursor if isinstance(next_cursor, str) else None

    def whoami(self) -> Json:
        """Who these credentials are (``GET /v1/whoami``): ``user_id``, ``shell_allowed``,
        ``auth``."""
        return self._object("GET", "/v1/whoami")

    def job(self, job_id: str) -> Json:
        """One job (``GET /v1/jobs/{id}``); ``NotFoundError`` for a missing or foreign id."""
        return self._object("GET", _job_path(job_id))

    def runs(self, job_id: str) -> list[Json]:
        """The job's runs, newest first (``GET /v1/jobs/{id}/runs``)."""
        return _items(self._object("GET", _job_path(job_id) + "/runs"))

    def preview(
        self,
        cron_schedule: str,
        *,
        timezone: str | None = None,
        count: int = 10,
        after: datetime | None = None,
        dst_gap: str | None = None,
        dst_repeat: str | None = None,
    ) -> Json:
        """The next ``count`` fires of a schedule, in words, DST transitions marked
        (``GET /v1/schedules/preview``); an invalid schedule is a ``ValidationError``."""
        params: dict[str, Any] = {"cron_schedule": cron_schedule, "count": count}
        if timezone is not None:
            params["timezone"] = timezone
        if after is not None:
            params["after"] = format_rfc3339(after)
        for name, value in (("dst_gap", dst_gap), ("dst_repeat", dst_repeat)):
            if value is not None:
                params[name] = value
        return self._object("GET", "/v1/schedules/preview", params=params)

    def run_output(self, job_id: str, run_id: str) -> str:
        """A run's whole output (``GET /v1/jobs/{id}/runs/{run_id}/output``); run lists
        carry only its start (``output_truncated``)."""
        path = _job_path(job_id) + "/runs/" + quote(run_id, safe="") + "/output"
        response = self._send("GET", path)
        if response.status_code >= 400:
            raise _error_from(response)
        return response.text

    def cancel(self, job_id: str) -> Json:
        """Cancel a job (``DELETE /v1/jobs/{id}``); returns it with status ``CANCELLED``."""
        return self.delete(job_id)

    def health(self) -> Json:
        """``GET /health``: ``{"status": "ok"}`` when the server is up."""
        return self._object("GET", "/health")

    # -- plumbing ------------------------------------------------------------

    def _error_from(self, response: httpx.Response) -> ChronoqError:
        return _error_from(response)

    def _object(self, method: str, path: str, **kwargs: Any) -> Json:
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error_from(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ChronoqError(f"{method} {path}: expected a JSON object from the server")
        return body

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise UnavailableError(f"the server at {self.url} is not reachable ({exc})") from exc
        except httpx.TimeoutException as exc:
            raise ChronoqError(f"{method} {path} to {self.url} timed out") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ChronoqError(f"{method} {path} to {self.url} failed: {exc}") from exc


_job_path = job_path


def _spec_body(spec: Mapping[str, Any], prefix: str = "") -> Json:
    """Drop ``None`` values and render datetimes (``next_fire_at``, ``start_at``,
    ``end_at``) as RFC 3339."""
    return times_as_text({key: value for key, value in spec.items() if value is not None}, prefix)


def _items(body: Json) -> list[Json]:
    items = body.get("items")
    if not isinstance(items, list):
        raise ChronoqError("expected an 'items' list from the server")
    return items


def _error_from(response: httpx.Response) -> ChronoqError:
    """Turn an error response (``{"error": {code, message, field}}``) into an exception."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {}
    status = response.status_code
    message = str(error.get("message") or f"HTTP {status}: {response.text[:200].strip()}")
    if status == 429:  # a per-user limit (docs/limits.md), or too many failed tokens
        retry_after = response.headers.get("Retry-After", "")
        return LimitExceededError(
            message,
            code=str(error.get("code") or "too_many_requests"),
            retry_after=int(retry_after) if retry_after.isdigit() else 1,
        )
    if status == 400:
        field = error.get("field")
        field = str(field) if field is not None else None
        is_schedule = field is not None and field.endswith(_SCHEDULE_FIELDS)
        return (ScheduleError if is_schedule else ValidationError)(message, field=field)
    return _BY_STATUS.get(status, ChronoqError)(message)
