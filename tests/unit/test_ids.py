"""``new_id``: canonical UUIDv7 text, time-ordered, never repeated (threads, fork)."""

from __future__ import annotations

import os
import threading
import time
import uuid

from chronoq.domain.ids import new_id


def test_an_id_is_a_canonical_version_7_uuid() -> None:
    text = new_id()
    parsed = uuid.UUID(text)
    assert str(parsed) == text  # canonical: lower-case hex, 8-4-4-4-12
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_ids_carry_the_millisecond_and_sort_by_it() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    stamps = [uuid.UUID(i).int >> 80 for i in ids]
    assert all(before <= s <= after for s in stamps)
    assert stamps == sorted(stamps)


def test_ids_never_repeat_across_buffer_refills_and_threads() -> None:
    seen: list[list[str]] = []

    def make() -> None:
        seen.append([new_id() for _ in range(5000)])  # > one buffer of randomness

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for batch in seen for i in batch]
    assert len(flat) == len(set(flat)) == 20000
    # Each id's random part is fresh: no two ids share their 74 random bits.
    randoms = {uuid.UUID(i).int & ((1 << 74) - 1) for i in flat}
    assert len(randoms) == len(flat)


def test_a_forked_child_does_not_repeat_the_parents_randomness() -> None:
    new_id()  # the parent's buffer now holds unused bits the child inherits
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next id's random part, then leave at once
        os.close(read)
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent = new_id()
    mask = (1 << 74) - 1
    assert uuid.UUID(child).int & mask != uuid.UUID(parent).int & mask
