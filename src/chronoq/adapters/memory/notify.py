"""``MemoryNotifier``: wake-ups between roles hosted in one process."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable


class MemoryNotifier:
    """Delivers each hint synchronously to the subscribers of its channel."""

    def __init__(self) -> None:
        self._subscribers: defaultdict[str, list[Callable[[str], None]]] = defaultdict(list)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._subscribers.clear()

    def publish(self, channel: str, message: str = "") -> None:
        for callback in list(self._subscribers.get(channel, ())):
            callback(message)

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        self._subscribers[channel].append(callback)
