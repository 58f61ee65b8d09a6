"""services.api.auth on a fake clock and the memory token store: the lookup cache (and
how soon a revocation bites), expiry, who may submit cmd:, and the failure limiter."""

from __future__ import annotations

from datetime import timedelta

import pytest
from starlette.requests import Request

from chronoq.adapters.memory import MemoryStore
from chronoq.domain.tokens import new_token, token_hash, token_id
from chronoq.errors import ValidationError
from chronoq.ports.tokens import ApiToken
from chronoq.services.api.auth import Authenticator, FailureLimiter
from chronoq.services.api.http import TooManyFailures, Unauthenticated
from chronoq.testing import FakeClock


def _request(*headers: tuple[str, str], client: str = "10.0.0.1") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers]
    return Request({"type": "http", "headers": raw, "client": (client, 5000)})


async def _setup(
    *, shell: bool = False, expires_in: float | None = None, loopback: bool = False
) -> tuple[Authenticator, MemoryStore, FakeClock, str]:
    clock, store = FakeClock(), MemoryStore()
    await store.start()
    secret = new_token()
    expires = None if expires_in is None else clock.now() + timedelta(seconds=expires_in)
    token = ApiToken(token_id=token_id(secret), user_id="alice", allow_shell=shell,
                     created_at=clock.now(), expires_at=expires)  # fmt: skip
    await store.create_token(token, token_hash(secret))
    auth = Authenticator("token", clock=clock, shell_enabled=True, loopback=loopback,
                         tokens=store, cache_seconds=5.0)  # fmt: skip
    return auth, store, clock, secret


def _bearer(secret: str, **kw: str) -> Request:
    return _request(("Authorization", f"Bearer {secret}"), ("X-User-ID", "mallory"), **kw)


async def test_a_revocation_bites_once_the_cached_entry_is_older_than_the_cache_time() -> None:
    auth, store, clock, secret = await _setup()
    assert (await auth.authenticate(_bearer(secret))).user_id == "alice"  # X-User-ID ignored
    await store.revoke_token(token_id(secret), clock.now())
    await clock.advance(4.9)
    assert (await auth.authenticate(_bearer(secret))).user_id == "alice"  # still cached
    await clock.advance(0.2)
    with pytest.raises(Unauthenticated, match="revoked"):
        await auth.authenticate(_bearer(secret))


async def test_expiry_is_checked_on_every_request_even_when_cached() -> None:
    auth, _, clock, secret = await _setup(expires_in=2)
    await auth.authenticate(_bearer(secret))
    await clock.advance(2)
    with pytest.raises(Unauthenticated, match="expired"):
        await auth.authenticate(_bearer(secret))


@pytest.mark.parametrize(
    ("shell", "loopback", "allowed"),
    [(False, False, False), (True, False, True), (False, True, True), (True, True, True)],
)
async def test_cmd_needs_allow_shell_off_loopback(
    shell: bool, loopback: bool, allowed: bool
) -> None:
    auth, _, _, secret = await _setup(shell=shell, loopback=loopback)
    assert (await auth.authenticate(_bearer(secret))).may_run_shell is allowed


async def test_header_mode_names_the_shell_users_off_loopback() -> None:
    auth = Authenticator("header", clock=FakeClock(), shell_enabled=True, loopback=False,
                         shell_users=frozenset({"ops"}))  # fmt: skip
    ops = await auth.authenticate(_request(("X-User-ID", "ops")))
    bob = await auth.authenticate(_request(("X-User-ID", "bob")))
    assert (ops.user_id, ops.may_run_shell, bob.may_run_shell) == ("ops", True, False)
    off = Authenticator("header", clock=FakeClock(), shell_enabled=False, loopback=True)
    assert not (await off.authenticate(_request(("X-User-ID", "ops")))).may_run_shell


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ((), Unauthenticated),
        ((("Authorization", "Token abc"),), Unauthenticated),
        ((("Authorization", "Bearer " + "cq_" + "x" * 42 + "!"),), Unauthenticated),
        ((("Authorization", "Bearer a"), ("Authorization", "Bearer b")), ValidationError),
    ],
)
async def test_bad_authorization_headers(
    headers: tuple[tuple[str, str], ...], error: type[Exception]
) -> None:
    auth, _, _, _ = await _setup()
    with pytest.raises(error) as raised:
        await auth.authenticate(_request(*headers))
    assert raised.value.field == "Authorization"  # type: ignore[attr-defined]


async def test_failures_are_limited_per_address_and_a_valid_token_always_passes() -> None:
    auth, _, clock, secret = await _setup()
    auth.limiter = FailureLimiter(burst=3, rate=0.5)
    bad = "Bearer " + new_token()
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await auth.authenticate(_request(("Authorization", bad)))
    with pytest.raises(TooManyFailures) as limited:
        await auth.authenticate(_request(("Authorization", bad)))
    assert limited.value.retry_after == 2
    assert (await auth.authenticate(_bearer(secret))).user_id == "alice"  # same address
    with pytest.raises(Unauthenticated):  # another address has its own budget
        await auth.authenticate(_request(("Authorization", bad), client="10.0.0.2"))
    await clock.advance(2)  # one failure refilled
    with pytest.raises(Unauthenticated):
        await auth.authenticate(_request(("Authorization", bad)))


def test_the_limiter_stays_bounded() -> None:
    limiter = FailureLimiter(burst=2, rate=1.0, max_addresses=100)
    for i in range(1000):
        limiter.charge(f"10.1.{i // 250}.{i % 250}", now=float(i))
    assert len(limiter._buckets) <= 100
