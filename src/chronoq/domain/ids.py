"""Identifiers: time-ordered UUIDs (version 7, RFC 9562).

Random UUIDv4 keys scatter every insert across the B-tree of each index that
holds them, so each commit rewrites many pages; v7 ids start with the
millisecond timestamp, so new rows land on the right-most pages. The id stays
an opaque, unguessable UUID to users (74 random bits).
"""

from __future__ import annotations

import os
import time
import uuid


def new_id() -> str:
    """A new UUIDv7 as its canonical string."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return str(uuid.UUID(int=value))
