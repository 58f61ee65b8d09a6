"""Hints between the processes of one embedded node, over inherited socket pairs.

With ``--worker-processes`` the workers of ``chronoq up`` run in child processes on the
same SQLite file. The parent and each child are joined by a ``socketpair``
(``SOCK_SEQPACKET``: one message per hint, in order, nothing on the filesystem, nobody
else can connect). A hint published in one process reaches that process's subscribers
at once, as ``MemoryNotifier`` delivers, and every other process of the node: the parent
is the hub and forwards what one child sends to the others.

Sends never block: a full socket drops the hint. Hints may be lost by contract
(``ports.notify``): the store's polling finds the work anyway.
"""

from __future__ import annotations

import asyncio
import socket
from collections import defaultdict
from collections.abc import Callable, Sequence

MAX_HINT_BYTES = 4096
"""A longer hint is not sent (hints are channel names and ids)."""
_SEP = "\n"


class IpcNotifier:
    """Local delivery plus every peer socket; ``hub``: forward between peers too."""

    def __init__(self, peers: Sequence[socket.socket] = (), *, hub: bool = True) -> None:
        self._subscribers: defaultdict[str, list[Callable[[str], None]]] = defaultdict(list)
        self._peers: list[socket.socket] = []
        self._hub = hub
        self._loop: asyncio.AbstractEventLoop | None = None
        for peer in peers:
            self.add_peer(peer)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for peer in self._peers:
            self._loop.add_reader(peer, self._readable, peer)

    async def close(self) -> None:
        for peer in list(self._peers):
            self.remove_peer(peer)
        self._subscribers.clear()

    def add_peer(self, peer: socket.socket) -> None:
        """Join a process (its socket end is non-blocking from now on)."""
        peer.setblocking(False)
        self._peers.append(peer)
        if self._loop is not None:
            self._loop.add_reader(peer, self._readable, peer)

    def remove_peer(self, peer: socket.socket) -> None:
        """Leave a process out (it exited) and close its socket end."""
        if peer not in self._peers:
            return
        self._peers.remove(peer)
        if self._loop is not None:
            self._loop.remove_reader(peer)
        peer.close()

    def publish(self, channel: str, message: str = "") -> None:
        self._deliver(channel, message)
        data = f"{channel}{_SEP}{message}".encode("utf-8", "surrogatepass")
        if len(data) <= MAX_HINT_BYTES:
            self._send(data, skip=None)

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        self._subscribers[channel].append(callback)

    def _deliver(self, channel: str, message: str) -> None:
        for callback in list(self._subscribers.get(channel, ())):
            callback(message)

    def _send(self, data: bytes, skip: socket.socket | None) -> None:
        for peer in list(self._peers):
            if peer is skip:
                continue
            try:
                peer.send(data)
            except (BlockingIOError, InterruptedError):
                continue  # the peer is behind: this hint is lost, as hints may be
            except OSError:
                self.remove_peer(peer)  # it exited

    def _readable(self, peer: socket.socket) -> None:
        while True:
            try:
                data = peer.recv(MAX_HINT_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.remove_peer(peer)
                return
            if not data:  # the other end closed: that process is gone
                self.remove_peer(peer)
                return
            channel, _, message = data.decode("utf-8", "surrogatepass").partition(_SEP)
            if self._hub:
                self._send(data, skip=peer)
            self._deliver(channel, message)
