"""Sealed list cursors (issue 7): opaque, per user, tamper-evident."""

from __future__ import annotations

import pytest

from chronoq.errors import ValidationError
from chronoq.services.api.cursors import CursorSeal


def test_a_cursor_round_trips_for_its_user_only() -> None:
    seal = CursorSeal(b"k" * 32)
    token = seal.seal("alice", "1234")
    assert token is not None and "1234" not in token
    assert seal.open("alice", token) == "1234"
    with pytest.raises(ValidationError):
        seal.open("bob", token)


def test_the_same_position_seals_differently_each_time() -> None:
    seal = CursorSeal()
    assert seal.seal("u", "7") != seal.seal("u", "7")
    assert seal.seal("u", None) is None and seal.open("u", None) is None


def test_another_key_cannot_open_it() -> None:
    token = CursorSeal(b"a" * 32).seal("u", "7")
    with pytest.raises(ValidationError):
        CursorSeal(b"b" * 32).open("u", token)


@pytest.mark.parametrize("token", ["7", "garbage!!", "é", "A" * 500, "AAAA", "=" * 8])
def test_anything_not_sealed_here_is_refused(token: str) -> None:
    with pytest.raises(ValidationError) as info:
        CursorSeal().open("u", token)
    assert info.value.field == "cursor"


def test_flipping_any_byte_is_refused() -> None:
    seal = CursorSeal()
    token = seal.seal("u", "123456789")
    assert token is not None
    for i in range(len(token) - 1):  # the last character carries unused padding bits
        swapped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(ValidationError):
            seal.open("u", swapped)
