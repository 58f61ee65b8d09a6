"""``SqliteStore``'s TokenStore side (ports.tokens): the ``api_tokens`` table (migration 004).

A mixin over the store's ``_run`` (one transaction on the store thread), so the
store module gains four methods without this SQL living in it. A second process
(``chronoq token create`` next to a running embedded server) opens the same
database file: WAL lets it read and write beside the server's writer thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from chronoq.domain.clock import from_micros, to_micros
from chronoq.errors import ConflictError
from chronoq.ports.tokens import ApiToken

T = TypeVar("T")

_COLUMNS = "token_id, user_id, allow_shell, created_at, expires_at, revoked_at"


def _token(row: Any) -> ApiToken:
    return ApiToken(
        token_id=row[0], user_id=row[1], allow_shell=bool(row[2]),
        created_at=from_micros(row[3]),
        expires_at=None if row[4] is None else from_micros(row[4]),
        revoked_at=None if row[5] is None else from_micros(row[5]),
    )  # fmt: skip


def _micros(value: datetime | None) -> int | None:
    return None if value is None else to_micros(value)


class SqliteTokens:
    """Mixed into ``SqliteStore`` (which provides ``_run``)."""

    async def _run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def create_token(self, token: ApiToken, token_hash: bytes) -> None:
        row = (
            token.token_id, token_hash, token.user_id, int(token.allow_shell),
            to_micros(token.created_at), _micros(token.expires_at), _micros(token.revoked_at),
        )  # fmt: skip

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO api_tokens (token_id, token_hash, user_id, allow_shell,"
                    " created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"token {token.token_id} exists already: {exc}") from None

        await self._run(insert)

    async def token_by_hash(self, token_hash: bytes) -> ApiToken | None:
        query = f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = ?"
        row = await self._run(lambda c: c.execute(query, (token_hash,)).fetchone())
        return None if row is None else _token(row)

    async def list_tokens(self, user_id: str | None = None) -> list[ApiToken]:
        query = (
            f"SELECT {_COLUMNS} FROM api_tokens WHERE ? IS NULL OR user_id = ?"
            " ORDER BY created_at, token_id"
        )
        rows = await self._run(lambda c: c.execute(query, (user_id, user_id)).fetchall())
        return [_token(r) for r in rows]

    async def revoke_token(self, token_id: str, at: datetime) -> ApiToken | None:
        at_us = to_micros(at)

        def revoke(conn: sqlite3.Connection) -> ApiToken | None:
            conn.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
                (at_us, token_id),
            )
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM api_tokens WHERE token_id = ?", (token_id,)
            ).fetchone()
            return None if row is None else _token(row)

        return await self._run(revoke)
