"""Identifiers: time-ordered UUIDs (version 7, RFC 9562).

Random UUIDv4 keys scatter every insert across the B-tree of each index that
holds them, so each commit rewrites many pages; v7 ids start with the
millisecond timestamp, so new rows land on the right-most pages. The id stays
an opaque, unguessable UUID to users (74 random bits from ``os.urandom``).

Every job and every run takes one on the hot path, so the random bits come from
a per-thread buffer of ``os.urandom`` (one system call per 400 ids, not one per
id), and the canonical text is formatted directly rather than through
``uuid.UUID``. A forked child drops the buffer it inherited: parent and child
must never hand out the same bits.
"""

from __future__ import annotations

import os
import threading
import time

_RANDOM_BYTES = 10
_BUFFER_IDS = 400


class _Entropy(threading.local):
    def __init__(self) -> None:
        self.buffer = b""
        self.at = 0


_entropy = _Entropy()


def _forget_entropy() -> None:
    _entropy.buffer, _entropy.at = b"", 0


os.register_at_fork(after_in_child=_forget_entropy)


def _random_bits() -> int:
    """80 fresh bits from the operating system's CSPRNG."""
    e = _entropy
    if e.at >= len(e.buffer):
        e.buffer, e.at = os.urandom(_RANDOM_BYTES * _BUFFER_IDS), 0
    at = e.at
    e.at = at + _RANDOM_BYTES
    return int.from_bytes(e.buffer[at : at + _RANDOM_BYTES], "big")


def new_id() -> str:
    """A new UUIDv7 as its canonical string."""
    ms = time.time_ns() // 1_000_000
    rand = _random_bits()
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
