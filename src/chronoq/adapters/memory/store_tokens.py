"""``MemoryStore``'s TokenStore side (ports.tokens), as strict as the SQL tables: one
token per id and per hash. A mixin over ``MemoryStore._db`` (which refuses calls while
the store is closed); the tokens live on the store object, so they survive a
close and a start like a reopened file. Each method is atomic on the event loop."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from chronoq.domain.clock import check_aware
from chronoq.errors import ConflictError
from chronoq.ports.tokens import ApiToken


class MemoryTokens:
    """Mixed into ``MemoryStore`` (which provides ``_db``)."""

    def _db(self) -> Any:
        raise NotImplementedError

    def _token_table(self) -> dict[bytes, ApiToken]:
        self._db()  # unavailable while closed, like every other method
        table: dict[bytes, ApiToken] | None = getattr(self, "_api_tokens", None)
        if table is None:
            table = {}
            self._api_tokens = table
        return table

    async def create_token(self, token: ApiToken, token_hash: bytes) -> None:
        table = self._token_table()
        check_aware(token.created_at, "created_at")
        for when in (token.expires_at, token.revoked_at):
            if when is not None:
                check_aware(when, "expires_at/revoked_at")
        if token_hash in table or any(t.token_id == token.token_id for t in table.values()):
            raise ConflictError(f"token {token.token_id} exists already")
        table[token_hash] = token

    async def token_by_hash(self, token_hash: bytes) -> ApiToken | None:
        return self._token_table().get(token_hash)

    async def list_tokens(self, user_id: str | None = None) -> list[ApiToken]:
        found = [t for t in self._token_table().values() if user_id in (None, t.user_id)]
        return sorted(found, key=lambda t: (t.created_at, t.token_id))

    async def revoke_token(self, token_id: str, at: datetime) -> ApiToken | None:
        at = check_aware(at, "at")
        table = self._token_table()
        for key, token in table.items():
            if token.token_id == token_id:
                if token.revoked_at is None:
                    table[key] = token = replace(token, revoked_at=at)
                return token
        return None
