"""HTTP plumbing shared by the routes: JSON responses, errors, body limits, identities."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from chronoq.errors import (
    ChronoqError,
    ConflictError,
    ForbiddenError,
    LimitExceededError,
    NotFoundError,
    PayloadTooLargeError,
    UnavailableError,
    ValidationError,
)
from chronoq.services.api.idempotency import KeyConflict

_ENCODER = msgspec.json.Encoder()
MAX_USER_ID = 200


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content)


class InvalidJobId(ValidationError):
    """A job id that is not a UUID (400 ``invalid_job_id``)."""


class UnsupportedMediaType(ChronoqError):
    """A body that is not ``application/json`` (415 ``unsupported_media_type``)."""


class Unauthenticated(ChronoqError):
    """No caller identity: ``X-User-ID`` missing (header mode), or a missing or invalid
    bearer token (token mode); ``code`` says which (401)."""

    def __init__(self, message: str, *, code: str = "missing_user_id") -> None:
        super().__init__(message)
        self.code = code
        self.field = "X-User-ID" if code == "missing_user_id" else "Authorization"


class TooManyFailures(ChronoqError):
    """Too many failed authentications from one address (429 ``too_many_failures``,
    with ``Retry-After``: ``retry_after`` seconds)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyStreams(TooManyFailures):
    """Over the number of output streams open at once (429 ``too_many_streams``, with
    ``Retry-After``)."""


def error_response(exc: ChronoqError) -> JSONResponse:
    status, code = _STATUS.get(type(exc), (500, "internal_error"))
    if isinstance(exc, ValidationError) and status == 500:
        status, code = 400, "validation_error"
    if isinstance(exc, ValidationError) and exc.message.startswith("invalid JSON"):
        code = "invalid_json"
    if isinstance(exc, Unauthenticated | LimitExceededError):
        code = exc.code
    body = {"error": {"code": code, "message": str(exc), "field": getattr(exc, "field", None)}}
    response = JSONResponse(body, status_code=status)
    if isinstance(exc, TooManyFailures | LimitExceededError):
        response.headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, Unauthenticated) and exc.field == "Authorization":
        response.headers["WWW-Authenticate"] = f'Bearer error="{exc.code}"'
    return response


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "field": None}}, status)


_STATUS: dict[type[ChronoqError], tuple[int, str]] = {
    ValidationError: (400, "validation_error"),
    InvalidJobId: (400, "invalid_job_id"),
    Unauthenticated: (401, "missing_user_id"),
    ForbiddenError: (403, "shell_disabled"),
    NotFoundError: (404, "not_found"),
    ConflictError: (409, "conflict"),
    KeyConflict: (409, "idempotency_key_reused"),
    PayloadTooLargeError: (413, "payload_too_large"),
    UnsupportedMediaType: (415, "unsupported_media_type"),
    TooManyFailures: (429, "too_many_failures"),
    LimitExceededError: (429, "user_limit"),  # the code is the limit's (exc.code)
    TooManyStreams: (429, "too_many_streams"),
    UnavailableError: (503, "unavailable"),
}


def user_of(request: Request) -> str:
    """The caller's user id: as authenticated for this request (``auth.authenticate``,
    run by the app before every guarded route), else from ``X-User-ID``."""
    caller = getattr(request.state, "caller", None)
    if caller is not None:
        return str(caller.user_id)
    return header_user(request)


def shell_allowed(request: Request, enabled: bool) -> bool:
    """Whether this request's caller may submit ``cmd:`` jobs (``enabled``: the server's
    setting, used as is when no caller was authenticated)."""
    caller = getattr(request.state, "caller", None)
    return enabled if caller is None else bool(caller.may_run_shell)


def header_user(request: Request) -> str:
    """The caller, from exactly one ``X-User-ID`` header (two are a 400: a proxy that
    appends rather than replaces must not let the client's own header through)."""
    values = request.headers.getlist("x-user-id")
    if len(values) > 1:
        raise ValidationError("send the X-User-ID header once", field="X-User-ID")
    user = values[0].strip() if values else ""
    if not user:
        raise Unauthenticated("the X-User-ID header is required")
    if len(user) > MAX_USER_ID:
        raise ValidationError(
            f"X-User-ID is longer than {MAX_USER_ID} characters", field="X-User-ID"
        )
    return user


def job_id_of(raw: str | None, *, field: str = "id") -> str:
    """A canonical job (or run) id, or 400 — a malformed id never reaches the store."""
    what = field.replace("_", " ") if field != "id" else "job id"
    if not raw:
        raise InvalidJobId(f"a {what} is required", field=field)
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidJobId(f"invalid {what} {raw[:80]!r}: expected a UUID", field=field) from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body over the {limit}-byte limit")
        chunks.append(chunk)
    body = b"".join(chunks)
    json_content_type(request.headers.get("content-type"), body)
    return body


def json_content_type(content_type: str | None, body: bytes) -> None:
    """Raise ``UnsupportedMediaType`` unless a body is declared ``application/json``.

    An empty body without a Content-Type passes (the JSON decoder then says what
    is missing); a declared Content-Type is checked even for an empty body.
    """
    if content_type is None:
        if body:
            raise UnsupportedMediaType("send the body with 'Content-Type: application/json'")
        return
    media, _, params = content_type.partition(";")
    charset_ok = all(
        p.split("=", 1)[1].strip().strip('"').lower() in ("utf-8", "utf8")
        for p in params.split(";")
        if p.strip().lower().startswith("charset=")
    )
    if media.strip().lower() != "application/json" or not charset_ok:
        raise UnsupportedMediaType(
            f"Content-Type {content_type[:80]!r} is not accepted: send 'application/json'"
        )
