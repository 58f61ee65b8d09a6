"""The TokenStore contract (ports.tokens) on SQLite, PostgreSQL and memory: tokens are
kept by hash, found by hash whatever their state, listed oldest first, revoked once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from chronoq.adapters.sqlite import SqliteStore
from chronoq.domain.tokens import new_token, token_hash, token_id, well_formed
from chronoq.errors import ConflictError
from chronoq.ports.store import Store
from chronoq.ports.tokens import ApiToken, TokenStore

from .helpers import T0


def _tokens(store: Store) -> TokenStore:
    assert isinstance(store, TokenStore)
    return store


def _make(user: str = "alice", *, shell: bool = False, at_s: int = 0) -> tuple[str, ApiToken]:
    secret = new_token()
    token = ApiToken(
        token_id=token_id(secret), user_id=user, allow_shell=shell,
        created_at=T0 + timedelta(seconds=at_s), expires_at=T0 + timedelta(days=1),
    )  # fmt: skip
    return secret, token


def test_tokens_are_random_well_formed_and_hashed() -> None:
    a, b = new_token(), new_token()
    assert a != b and well_formed(a) and well_formed(b)
    assert not well_formed(a[:-1]) and not well_formed("xx" + a[2:]) and not well_formed(a + "=")
    assert token_hash(a) != token_hash(b) and len(token_hash(a)) == 32
    assert token_id(a) == a[:11] and a.startswith("cq_")


async def test_a_token_is_found_by_its_hash_only(store: Store) -> None:
    tokens = _tokens(store)
    secret, token = _make(shell=True)
    await tokens.create_token(token, token_hash(secret))
    assert await tokens.token_by_hash(token_hash(secret)) == token
    assert await tokens.token_by_hash(token_hash(new_token())) is None
    assert await tokens.token_by_hash(secret.encode()) is None  # never keyed by the secret


async def test_duplicate_id_or_hash_is_a_conflict(store: Store) -> None:
    tokens = _tokens(store)
    secret, token = _make()
    await tokens.create_token(token, token_hash(secret))
    other_secret, other = _make("bob")
    with pytest.raises(ConflictError):
        await tokens.create_token(other, token_hash(secret))  # same hash
    with pytest.raises(ConflictError):
        same_id = ApiToken(token_id=token.token_id, user_id="bob", allow_shell=False,
                           created_at=T0)  # fmt: skip
        await tokens.create_token(same_id, token_hash(other_secret))
    assert await tokens.list_tokens() == [token]


async def test_list_is_oldest_first_and_filters_by_user(store: Store) -> None:
    tokens = _tokens(store)
    made = [_make(user, at_s=i) for i, user in enumerate(["bob", "alice", "bob"])]
    for secret, token in reversed(made):
        await tokens.create_token(token, token_hash(secret))
    assert await tokens.list_tokens() == [t for _, t in made]
    assert await tokens.list_tokens("bob") == [made[0][1], made[2][1]]
    assert await tokens.list_tokens("carol") == []


async def test_revoke_marks_once_and_unknown_is_none(store: Store) -> None:
    tokens = _tokens(store)
    secret, token = _make()
    kept_secret, kept = _make(at_s=1)
    await tokens.create_token(token, token_hash(secret))
    await tokens.create_token(kept, token_hash(kept_secret))
    first = await tokens.revoke_token(token.token_id, T0 + timedelta(hours=1))
    assert first is not None and first.revoked_at == T0 + timedelta(hours=1)
    again = await tokens.revoke_token(token.token_id, T0 + timedelta(hours=2))
    assert again == first  # the first revocation stands
    found = await tokens.token_by_hash(token_hash(secret))
    assert found == first and not found.usable(T0)
    assert await tokens.revoke_token("cq_missing", T0) is None
    still = await tokens.token_by_hash(token_hash(kept_secret))
    assert still is not None and still.revoked_at is None and still.usable(T0)


async def test_usable_until_expiry(store: Store) -> None:
    tokens = _tokens(store)
    secret, token = _make()
    forever = ApiToken(token_id=token.token_id, user_id="alice", allow_shell=False,
                       created_at=T0)  # fmt: skip
    await tokens.create_token(forever, token_hash(secret))
    found = await tokens.token_by_hash(token_hash(secret))
    assert found is not None and found.expires_at is None and found.usable(T0 + timedelta(days=999))
    assert token.usable(T0) and not token.usable(T0 + timedelta(days=1))


async def test_tokens_survive_a_restart(tmp_path: Path) -> None:
    """A second SqliteStore on the same file (the CLI beside a server) sees the tokens."""
    path = tmp_path / "db.sqlite"
    server, admin = SqliteStore(path), SqliteStore(path)
    await server.start()
    await admin.start()
    try:
        secret, token = _make()
        await admin.create_token(token, token_hash(secret))
        assert await server.token_by_hash(token_hash(secret)) == token
        await server.revoke_token(token.token_id, T0)
        assert [t.revoked_at for t in await admin.list_tokens()] == [T0]
    finally:
        await admin.close()
        await server.close()
