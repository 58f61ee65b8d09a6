"""A minimal HTTP/1.1 keep-alive client on asyncio streams.

httpx costs ~0.5-1 ms of CPU per request, which on a 2-core machine shared with
the server would make the load generator the bottleneck. This client sends
pre-encoded request bytes and parses only the status line and the framing
(``Content-Length`` or chunked); one request is in flight per connection (no
pipelining). There is no per-request timeout (``asyncio.wait_for`` would add a
task per request): callers bound whole phases with ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_IDLE_RECONNECT_S = 2.0
"""Reconnect before sending on a connection idle this long (servers close idle keep-alives)."""


class HttpError(Exception):
    """A malformed response or a connection lost mid-response."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def build_request(
    method: str,
    path: str,
    *,
    host: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> bytes:
    """The full request bytes, ready to be written as is (and reused)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    elif method in {"POST", "PUT", "PATCH"}:
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class Connection:
    """One keep-alive connection; ``request`` sends pre-encoded bytes and reads one response."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last_used = 0.0
        self.connects = 0

    async def connect(self) -> None:
        await self.close()
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, limit=1 << 20
        )
        self.connects += 1
        self._last_used = time.monotonic()

    async def close(self) -> None:
        writer = self._writer
        self._reader = self._writer = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(self, data: bytes) -> Response:
        """Send ``data`` (one complete request) and return the response."""
        writer = self._writer
        if writer is None or time.monotonic() - self._last_used > _IDLE_RECONNECT_S:
            await self.connect()
            writer = self._writer
            assert writer is not None
        writer.write(data)
        try:
            response, keep_alive = await self._read_response()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            await self.close()
            raise HttpError(f"connection lost reading the response: {exc!r}") from exc
        except BaseException:
            await self.close()
            raise
        self._last_used = time.monotonic()
        if not keep_alive:
            await self.close()
        return response

    async def _read_response(self) -> tuple[Response, bool]:
        reader = self._reader
        assert reader is not None
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or len(head) < 12:
            raise HttpError(f"bad status line: {head[:80]!r}")
        status = int(head[9:12])
        lower = head.lower()
        keep_alive = b"\r\nconnection: close" not in lower
        index = lower.find(b"\r\ncontent-length:")
        if index >= 0:
            end = lower.index(b"\r\n", index + 2)
            length = int(lower[index + 17 : end])
            body = await reader.readexactly(length) if length else b""
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = await _read_chunked(reader)
        elif status in {204, 304} or 100 <= status < 200:
            body = b""
        else:
            body = await reader.read()
            keep_alive = False
        return Response(status, body), keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            # Trailers (if any) end with an empty line.
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


class Client:
    """Convenience wrapper for the untimed parts (setup, polling, fetching results)."""

    def __init__(self, host: str, port: int, *, user_id: str | None = None) -> None:
        self.host = host
        self.port = port
        self.host_header = f"{host}:{port}"
        self.user_id = user_id
        self._conn = Connection(host, port)

    def encode(self, method: str, path: str, body: Any = None) -> bytes:
        headers = {"X-User-ID": self.user_id} if self.user_id else None
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        return build_request(method, path, host=self.host_header, headers=headers, body=payload)

    async def call(self, method: str, path: str, body: Any = None) -> Response:
        data = self.encode(method, path, body)
        try:
            return await self._conn.request(data)
        except HttpError:
            if method != "GET":
                raise
            return await self._conn.request(data)  # one retry for idempotent requests

    async def close(self) -> None:
        await self._conn.close()
