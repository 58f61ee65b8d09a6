"""Opaque list cursors: what the store hands back is sealed before a caller sees it.

A store's cursor is its own position (the SQLite and PostgreSQL stores use a
global sequence number, so the raw value would tell a user how many jobs
*others* created between two of theirs). The API never shows it: ``seal``
encrypts it under a random nonce (so two cursors for the same position differ)
and binds it to the user with a MAC; ``open`` refuses anything it did not seal
for that same user (``400 validation_error``, field ``cursor``).

Construction (standard library only): ``nonce`` 12 random bytes; the position
XOR ``HMAC-SHA256(key, "stream" | nonce | user)`` (positions are at most 32
bytes); a tag ``HMAC-SHA256(key, "tag" | nonce | user | ciphertext)[:16]``;
``base64url(nonce | ciphertext | tag)`` without padding. The key comes from
``ApiDeps.cursor_key``; without one each process draws its own, so a cursor is
then valid only on the API process that issued it, until it restarts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from chronoq.errors import ValidationError

_NONCE = 12
_TAG = 16
_MAX_POSITION = 32
_MAX_TOKEN = 4 * (_NONCE + _MAX_POSITION + _TAG) // 3 + 4


class CursorSeal:
    """Seals store cursors for one user and opens only those (see the module docstring)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key else secrets.token_bytes(32)

    def seal(self, user: str, position: str | None) -> str | None:
        if position is None:
            return None
        raw = position.encode()
        if len(raw) > _MAX_POSITION:
            raise ValueError(f"a store cursor longer than {_MAX_POSITION} bytes: {position!r}")
        nonce = secrets.token_bytes(_NONCE)
        sealed = bytes(a ^ b for a, b in zip(raw, self._stream(nonce, user), strict=False))
        token = nonce + sealed + self._tag(nonce, user, sealed)
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode()

    def open(self, user: str, token: str | None) -> str | None:
        """The store's position behind ``token``, or ``ValidationError`` naming ``cursor``."""
        if not token:
            return None
        data = _decode(token)
        if data is None or len(data) <= _NONCE + _TAG:
            raise _invalid(token)
        nonce, sealed, tag = data[:_NONCE], data[_NONCE:-_TAG], data[-_TAG:]
        if not hmac.compare_digest(tag, self._tag(nonce, user, sealed)):
            raise _invalid(token)
        raw = bytes(a ^ b for a, b in zip(sealed, self._stream(nonce, user), strict=False))
        return raw.decode("ascii", "replace")

    def _stream(self, nonce: bytes, user: str) -> bytes:
        return hmac.digest(self._key, b"stream\0" + nonce + user.encode(), hashlib.sha256)

    def _tag(self, nonce: bytes, user: str, sealed: bytes) -> bytes:
        message = b"tag\0" + nonce + len(user.encode()).to_bytes(4, "big") + user.encode() + sealed
        return hmac.digest(self._key, message, hashlib.sha256)[:_TAG]


def _decode(token: str) -> bytes | None:
    if len(token) > _MAX_TOKEN or not token.isascii():
        return None
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None


def _invalid(token: str) -> ValidationError:
    return ValidationError(
        f"invalid cursor {token[:80]!r}: pass next_cursor from a previous page", field="cursor"
    )
