"""``IpcNotifier``: hints between the processes of one embedded node, over socket pairs.

Both ends live in this process here (two notifiers, as a parent and a child would
hold them); every wait is a deadline-bounded poll.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from chronoq.adapters.ipc import IpcNotifier
from chronoq.adapters.ipc.notify import MAX_HINT_BYTES
from chronoq.ports.notify import CANCEL, FIRES, RUNS


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


async def until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.005)


@dataclass
class Joined:
    """A parent's and a child's notifier, and what each heard on RUNS."""

    parent: IpcNotifier
    child: IpcNotifier
    mine: list[str] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)


@pytest.fixture
async def joined() -> AsyncIterator[Joined]:
    a_end, b_end = pair()
    both = Joined(IpcNotifier([a_end]), IpcNotifier([b_end], hub=False))
    await both.parent.start()
    await both.child.start()
    both.parent.subscribe(RUNS, both.mine.append)
    both.child.subscribe(RUNS, both.heard.append)
    yield both
    await both.parent.close()
    await both.child.close()


async def test_a_hint_reaches_its_own_process_at_once_and_the_other_process(
    joined: Joined,
) -> None:
    joined.child.subscribe(FIRES, joined.heard.append)  # another channel: not for RUNS hints
    joined.parent.publish(RUNS, "run-1")
    assert joined.mine == ["run-1"]  # synchronously, as MemoryNotifier
    await until(lambda: joined.heard == ["run-1"])


async def test_the_hub_forwards_one_childs_hint_to_the_others_not_back() -> None:
    hub_1, child_1_end = pair()
    hub_2, child_2_end = pair()
    hub = IpcNotifier([hub_1, hub_2])
    one, two = IpcNotifier([child_1_end], hub=False), IpcNotifier([child_2_end], hub=False)
    for notifier in (hub, one, two):
        await notifier.start()
    at_hub: list[str] = []
    at_one: list[str] = []
    at_two: list[str] = []
    hub.subscribe(CANCEL, at_hub.append)
    one.subscribe(CANCEL, at_one.append)
    two.subscribe(CANCEL, at_two.append)
    one.publish(CANCEL, "run\nwith newline and ü")
    await until(lambda: at_two == ["run\nwith newline and ü"])
    assert at_hub == ["run\nwith newline and ü"]
    assert at_one == ["run\nwith newline and ü"]  # its own delivery, once: none echoed back
    for notifier in (hub, one, two):
        await notifier.close()


async def test_a_peer_that_goes_away_is_dropped_and_the_rest_still_hear() -> None:
    gone_end, gone_child = pair()
    live_end, live_child = pair()
    hub = IpcNotifier([gone_end, live_end])
    live = IpcNotifier([live_child], hub=False)
    await hub.start()
    await live.start()
    heard: list[str] = []
    live.subscribe(FIRES, heard.append)
    gone_child.close()  # that process exited
    await until(lambda: gone_end.fileno() == -1)  # seen and closed by the hub
    hub.publish(FIRES, "after")
    await until(lambda: heard == ["after"])
    await hub.close()
    await live.close()


async def test_a_hint_too_long_to_send_is_delivered_locally_only(joined: Joined) -> None:
    joined.parent.publish(RUNS, "x" * MAX_HINT_BYTES)
    joined.parent.publish(RUNS, "short")
    await until(lambda: joined.heard == ["short"])  # in order: the long one was never sent
    assert joined.mine == ["x" * MAX_HINT_BYTES, "short"]


async def test_a_peer_that_does_not_read_never_blocks_a_publisher() -> None:
    a_end, b_end = pair()  # nobody reads b_end
    parent = IpcNotifier([a_end])
    await parent.start()
    mine: list[str] = []
    parent.subscribe(RUNS, mine.append)
    started = time.monotonic()
    for index in range(20_000):  # far more than the socket buffer holds: the rest dropped
        parent.publish(RUNS, str(index))
    assert len(mine) == 20_000
    assert time.monotonic() - started < 5.0
    b_end.setblocking(False)
    received = 0
    while True:
        try:
            b_end.recv(MAX_HINT_BYTES)
        except BlockingIOError:
            break
        received += 1
    assert 0 < received < 20_000
    await parent.close()
    b_end.close()
