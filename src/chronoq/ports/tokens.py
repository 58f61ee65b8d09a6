"""The TokenStore port: API tokens for ``--auth token`` (docs/auth.md).

The store keeps a token's SHA-256 (``domain.tokens.token_hash``), never the token,
with who it acts as, whether it may submit ``cmd:`` jobs, when it expires and
whether it was revoked. Implemented by the SQLite, PostgreSQL and memory stores
(contract: tests/contract/test_tokens.py):

* ``create_token`` stores a new token; a second one with the same id or hash is a
  ``ConflictError`` (the caller makes a new token and tries again).
* ``token_by_hash`` returns the token for a hash whatever its state (revoked and
  expired ones too: the caller decides), or None.
* ``list_tokens`` returns tokens oldest first, of one user or of everyone.
* ``revoke_token`` marks a token revoked at ``at`` and returns it; revoking it again
  keeps the first instant; an unknown id returns None.

Every method raises ``UnavailableError`` when the store cannot be reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """A stored token, without its secret."""

    token_id: str
    """The token's prefix (``domain.tokens.token_id``)."""
    user_id: str
    allow_shell: bool
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@runtime_checkable
class TokenStore(Protocol):
    async def create_token(self, token: ApiToken, token_hash: bytes) -> None: ...

    async def token_by_hash(self, token_hash: bytes) -> ApiToken | None: ...

    async def list_tokens(self, user_id: str | None = None) -> list[ApiToken]: ...

    async def revoke_token(self, token_id: str, at: datetime) -> ApiToken | None: ...
