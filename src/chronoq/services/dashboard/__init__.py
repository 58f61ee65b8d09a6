"""The web dashboard: static pages served by the api role (docs/dashboard.md).

The pages are plain HTML, CSS and JavaScript modules shipped in this package
(``static/``): no build step, nothing fetched from another site. They hold no job data
and need no authentication to load; every job they show comes from Chronoq's own JSON
API (``/v1/...``), called by the page with the user's credentials (an API token in the
``token`` auth mode, a user id in the ``header`` mode), so the API decides what a user
may see exactly as it does for ``curl``.

``dashboard_routes(auth_mode)`` gives the routes to add to the api application:
``/dashboard/`` (the pages, with a strict Content-Security-Policy), ``/dashboard``
and ``/`` redirecting there, and ``/dashboard/config.json`` telling the pages which
auth mode the server uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR: Final = Path(__file__).parent / "static"
PREFIX: Final = "/dashboard"

SECURITY_HEADERS: Final = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
)
"""Sent with every dashboard file: scripts and styles only from this server, no frames
(no clickjacking of the action buttons), and revalidated so an upgrade shows at once."""


class SecurityHeaders:
    """ASGI wrapper adding ``SECURITY_HEADERS`` to every response of ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k not in names]
                message["headers"] = kept + list(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def dashboard_routes(auth_mode: str) -> list[BaseRoute]:
    """The dashboard's routes for a server in ``auth_mode`` (``header`` or ``token``)."""

    async def config(_request: Request) -> Response:
        return JSONResponse({"auth": auth_mode}, headers={"Cache-Control": "no-store"})

    async def to_dashboard(_request: Request) -> Response:
        return RedirectResponse(PREFIX + "/", status_code=307)

    static = StaticFiles(directory=STATIC_DIR, html=True)
    return [
        Route("/", to_dashboard, methods=["GET", "HEAD"]),
        Route(PREFIX, to_dashboard, methods=["GET", "HEAD"]),
        Route(PREFIX + "/config.json", config, methods=["GET"]),
        Mount(PREFIX, app=SecurityHeaders(static), name="dashboard"),
    ]
