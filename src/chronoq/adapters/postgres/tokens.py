"""``PostgresStore``'s TokenStore side (ports.tokens): the ``api_tokens`` table (migration 006).

A mixin over the store's ``_connected`` pool, so the store module gains four
methods without this SQL living in it. Each method is one statement.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chronoq.adapters.postgres.errors import translated
from chronoq.adapters.postgres.rows import aware
from chronoq.ports.tokens import ApiToken

_COLUMNS = "token_id, user_id, allow_shell, created_at, expires_at, revoked_at"
INSERT = (
    "INSERT INTO api_tokens (token_id, token_hash, user_id, allow_shell, created_at,"
    " expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
BY_HASH = f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = $1"
LIST = (
    f"SELECT {_COLUMNS} FROM api_tokens WHERE $1::text IS NULL OR user_id = $1"
    " ORDER BY created_at, token_id"
)
REVOKE = (
    "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE token_id = $1"
    f" RETURNING {_COLUMNS}"
)


def _token(row: Any) -> ApiToken:
    return ApiToken(
        token_id=row[0], user_id=row[1], allow_shell=row[2], created_at=row[3],
        expires_at=row[4], revoked_at=row[5],
    )  # fmt: skip


def _optional(value: datetime | None, name: str) -> datetime | None:
    return None if value is None else aware(value, name)


class PostgresTokens:
    """Mixed into ``PostgresStore`` (which provides ``_connected``)."""

    def _connected(self) -> Any:
        raise NotImplementedError

    async def create_token(self, token: ApiToken, token_hash: bytes) -> None:
        args = (
            token.token_id, token_hash, token.user_id, token.allow_shell,
            aware(token.created_at, "created_at"), _optional(token.expires_at, "expires_at"),
            _optional(token.revoked_at, "revoked_at"),
        )  # fmt: skip
        with translated("create_token"):
            await self._connected().execute(INSERT, *args)

    async def token_by_hash(self, token_hash: bytes) -> ApiToken | None:
        with translated("token_by_hash"):
            row = await self._connected().fetchrow(BY_HASH, token_hash)
        return None if row is None else _token(row)

    async def list_tokens(self, user_id: str | None = None) -> list[ApiToken]:
        with translated("list_tokens"):
            rows = await self._connected().fetch(LIST, user_id)
        return [_token(r) for r in rows]

    async def revoke_token(self, token_id: str, at: datetime) -> ApiToken | None:
        with translated("revoke_token"):
            row = await self._connected().fetchrow(REVOKE, token_id, aware(at, "at"))
        return None if row is None else _token(row)
