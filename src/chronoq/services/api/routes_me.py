"""``GET /v1/whoami``: who the request's credentials are, for a page or a script to show.

It reads nothing from the store: the authenticated caller (``auth.authenticate``), else the
``X-User-ID`` header, and the server's auth mode. ``shell_allowed`` is the same answer a
submission of a ``cmd:`` job would get (``http.shell_allowed``).
"""

from __future__ import annotations

from starlette.requests import Request

from chronoq.services.api.deps import ApiDeps
from chronoq.services.api.http import JSONResponse, shell_allowed, user_of


async def whoami(request: Request) -> JSONResponse:
    deps: ApiDeps = request.app.state.deps
    return JSONResponse(
        {
            "user_id": user_of(request),
            "shell_allowed": shell_allowed(request, deps.shell_enabled),
            "auth": request.app.state.auth.mode,
        }
    )
