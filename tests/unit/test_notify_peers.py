"""``Peers``: when a notifier believes another process listens (fake clock)."""

from __future__ import annotations

from chronoq.adapters.postgres.peers import FORGET_AFTER, HELLO, HERE, Peers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_peers_are_assumed_while_answers_may_still_come_then_known() -> None:
    clock = Clock()
    peers = Peers(keepalive=10, discovery=1.0, clock=clock)
    assert not peers.any()  # never connected: nobody
    peers.connected()
    assert peers.any()
    clock.now += 1.0
    assert not peers.any()  # the window passed without an answer
    assert peers.heard(7, HERE) is False  # an answer needs no answer
    assert peers.any()


def test_a_hello_asks_for_an_answer_and_a_silent_peer_is_forgotten() -> None:
    clock = Clock()
    peers = Peers(keepalive=10, discovery=0.0, clock=clock)
    assert peers.heard(7, HELLO) is True
    clock.now += FORGET_AFTER * 10
    assert peers.any()  # exactly at the limit: still there
    peers.heard(8, HERE)
    clock.now += 0.5
    assert peers.any()  # 7 forgotten, 8 still fresh
    clock.now += FORGET_AFTER * 10
    assert not peers.any()
