"""API tokens: how they are made, named and hashed (``--auth token``, docs/auth.md).

A token is ``cq_`` followed by 32 random bytes in URL-safe base64 (43 characters):
256 bits from the operating system's CSPRNG. The store keeps only its SHA-256, so a
copy of the database (a backup, a leaked dump) lets nobody call the API. A slow
password hash (bcrypt, argon2) is not needed: it exists to make guessing a
*low-entropy* secret from its hash expensive, and nobody can enumerate 2^256
candidates; a fast hash also keeps every request's authentication cheap.

The token's id is its first 11 characters (``cq_`` + 8): shown by ``chronoq token
list`` and used by ``revoke``, so an operator can tell tokens apart without the
secret; the 35 characters left still carry 210 random bits.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "cq_"
TOKEN_BYTES = 32
TOKEN_LENGTH = len(TOKEN_PREFIX) + 43
ID_LENGTH = len(TOKEN_PREFIX) + 8


def new_token() -> str:
    """A fresh random token (shown once; only its hash is stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    """The SHA-256 digest the store keys a token by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def token_id(token: str) -> str:
    """The public id of a token: its prefix (never enough to use it)."""
    return token[:ID_LENGTH]


def well_formed(token: str) -> bool:
    """Whether ``token`` could be one of ours (a cheap check before any lookup)."""
    return (
        len(token) == TOKEN_LENGTH
        and token.startswith(TOKEN_PREFIX)
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in token[len(TOKEN_PREFIX) :])
    )
