"""What keeps a web browser from driving the API (DNS rebinding, cross-site forms).

Two checks, both before any route runs:

* **Host allowlist.** A page on ``attacker.example`` whose name is rebound to
  127.0.0.1 reaches a loopback listener as "same origin", but its requests
  still carry ``Host: attacker.example:P``. Only these names are accepted, with
  or without a port: the loopback names (``127.0.0.1``, ``localhost``, ``::1``,
  ``[::1]``), the address the connection arrived on (the listen address; an IP
  literal cannot be rebound), and the extra names the runtime passes
  (``ApiDeps.allowed_hosts``; ``*`` accepts any). Anything else is ``421
  host_not_allowed`` and nothing runs. A request without ``Host`` (HTTP/1.0)
  is not a browser's and passes. ``/health`` and ``/metrics`` carry no job
  data and answer whatever the Host, so probes and scrapers that use a service
  name keep working.
* **JSON only** (``http.json_content_type``, called where a body is read): a body
  must be sent as ``application/json`` (a ``charset=utf-8`` parameter is
  fine). Browsers send ``text/plain``, form and multipart bodies cross-site
  without a preflight; those are ``415 unsupported_media_type``.

No CORS headers are ever sent, so a browser never lets a foreign page read an
answer or send a preflighted request.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from chronoq.services.api.http import JSONResponse

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
OPEN_PATHS = frozenset({"/health", "/metrics"})


def host_name(value: str) -> str:
    """The name of a Host value: ``"[::1]:8080"`` -> ``"::1"``, ``"LocalHost:80"`` ->
    ``"localhost"``, a bare ``"::1"`` -> ``"::1"``."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value  # a bare name, a bare IPv4 or a bare (unbracketed) IPv6 address


class HostAllowlist:
    """ASGI middleware refusing requests whose ``Host`` is not an allowed name (see module)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        extra = {host_name(h) for h in allowed_hosts}
        self.any_host = "*" in extra
        self.allowed = LOOPBACK_HOSTS | extra

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        hosts = [v for k, v in scope.get("headers", ()) if k == b"host"]
        problem = None
        if len(hosts) > 1:
            problem = "more than one Host header"
        elif hosts and not self._allowed(hosts[0].decode("latin-1"), scope):
            problem = f"Host {hosts[0].decode('latin-1')[:100]!r} is not served here"
        if problem is None:
            await self.app(scope, receive, send)
            return
        body = {"error": {"code": "host_not_allowed", "message": problem, "field": None}}
        await JSONResponse(body, status_code=421)(scope, receive, send)

    def _allowed(self, host: str, scope: Scope) -> bool:
        if self.any_host:
            return True
        name = host_name(host)
        if name in self.allowed:
            return True
        server = scope.get("server")
        return server is not None and name == str(server[0]).lower()
