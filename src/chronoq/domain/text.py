"""Text that came from outside (job output, error text) made safe to store.

Job output is untrusted bytes. Every store must keep it as valid text and
keep the SAME text: PostgreSQL refuses NUL in ``text`` and every engine
refuses invalid UTF-8, so one run's output must never be able to stop the
recording of others. ``clean_text`` is the one rule, applied to every
outcome before any store sees it (``RunOutcome``), so SQLite, PostgreSQL and
the in-memory store hold identical strings.
"""

from __future__ import annotations

NUL_MARK = "\u2400"
"""SYMBOL FOR NULL (␀): what a NUL character becomes, visibly."""


def clean_text(value: str) -> str:
    """``value`` with NUL shown as ``␀`` and lone surrogates (undecodable bytes) as U+FFFD.

    Other control characters are kept: every store holds them as they are.
    """
    if "\x00" in value:
        value = value.replace("\x00", NUL_MARK)
    if value.isascii():
        return value  # the common case, checked without encoding
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


def decode_output(data: bytes) -> str:
    """Bytes from a process -> storable text (invalid UTF-8 becomes U+FFFD, NUL ␀)."""
    return clean_text(data.decode("utf-8", "replace"))
