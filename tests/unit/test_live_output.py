"""The live output window (``domain/live_output.py``): what the worker keeps of a running
process's output, and what a reader gets after the offset it has."""

from __future__ import annotations

import pytest

from chronoq.domain.live_output import LiveOutput, LiveTail, bounded, text_after
from chronoq.domain.text import NUL_MARK


def test_a_character_split_between_two_reads_is_decoded_whole() -> None:
    tail = LiveTail()
    data = "é🙂".encode()
    tail.feed(data[:1])
    assert tail.end == 0 and tail.snapshot() == (0, "")  # half a character: nothing yet
    tail.feed(data[1:])
    assert tail.snapshot() == (0, "é🙂")
    assert tail.end == len(data)


def test_nul_and_invalid_bytes_are_cleaned_and_counted_as_cleaned() -> None:
    tail = LiveTail()
    tail.feed(b"a\x00b\xffc")
    text = f"a{NUL_MARK}b\ufffdc"
    assert tail.snapshot() == (0, text)
    assert tail.end == len(text.encode())


def test_only_the_newest_bytes_are_kept_and_the_offset_follows() -> None:
    tail = LiveTail(limit=10)
    for _ in range(100):
        tail.feed(b"0123456789abc")
    assert tail.snapshot() == (1290, "3456789abc")
    assert tail.end == 1300


def test_the_window_never_starts_inside_a_character() -> None:
    tail = LiveTail(limit=5)
    tail.feed("ééé".encode())  # 6 bytes: the first é cannot be half kept
    assert tail.snapshot() == (2, "éé")


def test_bounded_cleans_and_keeps_the_newest_bytes() -> None:
    assert bounded(3, "ab\x00cd", limit=4) == (8, "cd")  # ␀ is 3 bytes: not half kept
    start, text = bounded(3, "abcdef", limit=4)
    assert (start, text) == (5, "cdef")
    with pytest.raises(ValueError):
        bounded(-1, "x")


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0, (10, "aébc")), (10, (10, "aébc")), (11, (11, "ébc")), (12, (13, "bc")),
     (15, (15, "")), (99, (15, ""))],
)  # fmt: skip
def test_text_after_an_offset(offset: int, expected: tuple[int, str]) -> None:
    assert text_after(10, "aébc", offset) == expected  # é is bytes 11-12


def test_a_live_output_is_bounded_on_construction() -> None:
    out = LiveOutput(run_id="r", attempt=1, start=0, text="x" * 300_000)
    assert out.end == 300_000
    assert out.start == 300_000 - 262_144


def test_memory_stays_bounded_whatever_the_process_prints() -> None:
    tail = LiveTail(limit=16_384)
    chunk = ("é" * 500 + "\n").encode()  # 1,001 bytes, characters cut across trims
    for _ in range(1000):
        tail.feed(chunk)
        assert len(tail._kept) <= 16_384 + 4096 + len(chunk)
    start, text = tail.snapshot()
    assert start + len(text.encode()) == tail.end == 1000 * len(chunk)
    assert len(text.encode()) <= 16_384 and text.endswith("é\n")
    assert not text.startswith("\ufffd")  # never a half character
