"""The HTTP side of a node: its listener, the api's settings that come from the command
line (Host allowlist, authenticator, cursor key), and uvicorn as the node runs it."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn

from chronoq.domain.clock import Clock
from chronoq.errors import ConfigError
from chronoq.ports.tokens import TokenStore
from chronoq.runtime.config import Settings, is_loopback
from chronoq.runtime.wiring import Backends
from chronoq.services.api.auth import Authenticator


class Server(uvicorn.Server):
    """uvicorn, minus its habit of re-raising SIGTERM after serving: the node stops first;
    and open output streams (``app.state.streams``) are closed as soon as it stops, so
    they do not hold up its graceful shutdown."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        streams = getattr(getattr(self.config.app, "state", None), "streams", None)
        if streams is not None:
            streams.close()
        super().handle_exit(sig, frame)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening: uvicorn does that).

    Raises ``ConfigError`` naming the address when it cannot be bound (in use, no such
    address, no permission), so the node stops with one line and a non-zero exit.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


def api_hosts(settings: Settings) -> frozenset[str]:
    """The Host names the API serves besides the loopback names: ``--host`` when it is a
    name or an address (not a wildcard), and ``--allowed-hosts``."""
    hosts = {h.strip() for h in settings.allowed_hosts.split(",") if h.strip()}
    if settings.host not in ("0.0.0.0", "::", ""):
        hosts.add(settings.host)
    return frozenset(hosts)


def authenticator(settings: Settings, b: Backends, clock: Clock) -> Authenticator:
    """The api's ``Authenticator``: ``--auth`` (or header on loopback), the store's tokens,
    who may submit ``cmd:`` jobs (``services.api.auth``)."""
    mode = settings.auth_mode
    tokens = b.jobs if isinstance(b.jobs, TokenStore) else None
    if mode == "token" and tokens is None:
        raise ConfigError("--auth token needs a store that keeps tokens (SQLite or PostgreSQL)")
    users = frozenset(u.strip() for u in settings.shell_users.split(",") if u.strip())
    return Authenticator(
        mode, clock=clock, shell_enabled=settings.shell_enabled,
        loopback=is_loopback(settings.host), tokens=tokens, shell_users=users,
    )  # fmt: skip


def cursor_key(settings: Settings) -> bytes | None:
    """``--cursor-key``; else, distributed, a key derived from the store URL (every api
    process of one cluster has it, a client does not); else None (random per process)."""
    if settings.cursor_key:
        return settings.cursor_key.encode()
    if settings.distributed and settings.store:
        return hashlib.blake2b(settings.store.encode(), person=b"chronoq-cursors").digest()
    return None
