"""Who is calling: the ``header`` and ``token`` authentication modes (docs/auth.md).

* ``header``: the caller is the ``X-User-ID`` header, as in the seed. Only for a
  loopback listener or behind a gateway that authenticates and sets the header
  itself (the node refuses it on other addresses unless ``--auth header`` is explicit).
* ``token``: the caller is the user of the ``Authorization: Bearer cq_…`` token, looked
  up by its SHA-256 in the store (``ports.tokens``); ``X-User-ID`` is ignored, so a
  caller cannot act as anyone else. Lookups are cached for ``cache_seconds`` per
  process (every request authenticates; a revocation takes effect within that time);
  expiry is checked on every request.

Failed token authentication answers 401 and is limited per client address by a
token bucket (``FAILURE_BURST`` failures, refilled at ``FAILURE_RATE`` a second);
beyond it the answer is 429 with ``Retry-After``. The token is checked first and a
valid one always passes, so a flood from one address (a NAT, a shared proxy) never
locks out its honest callers. Guessing a 256-bit token is hopeless anyway: the limit
bounds the work and the noise one address can cause. Header mode has no secret to
guess, hence no limit.

``cmd:`` jobs: a caller may submit them when the server has shell jobs on and, off
a loopback listener, the caller is allowed: a token made with ``--allow-shell``, or
in header mode a user named in ``shell_users``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from starlette.requests import Request

from chronoq.domain.clock import Clock
from chronoq.domain.ratelimit import TokenBucket
from chronoq.domain.tokens import token_hash, well_formed
from chronoq.errors import ValidationError
from chronoq.ports.tokens import ApiToken, TokenStore
from chronoq.services.api.http import TooManyFailures, Unauthenticated, header_user

MODES = ("header", "token")
CACHE_SECONDS = 5.0
"""How long an api process trusts a looked-up token: a revocation (or a new token's
first use after a miss) takes effect within this time."""
CACHE_ENTRIES = 10_000
FAILURE_BURST = 20
FAILURE_RATE = 1.0
MAX_ADDRESSES = 10_000
MAX_AUTHORIZATION = 200
"""Longest ``Authorization`` header read (a token is 46 characters)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of one request."""

    user_id: str
    may_run_shell: bool


@dataclass(slots=True)
class FailureLimiter:
    """Per-address token buckets of failed authentications (``TokenBucket``)."""

    burst: int = FAILURE_BURST
    rate: float = FAILURE_RATE
    max_addresses: int = MAX_ADDRESSES
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def charge(self, address: str, now: float) -> int | None:
        """Count one failure: None while within budget, else the seconds to wait."""
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.max_addresses:
                self._forget_idle(now)
            bucket = self._buckets[address] = TokenBucket(rate=self.rate, burst=self.burst)
        if bucket.available(now) >= 1:
            bucket.take(1)
            return None
        return max(1, math.ceil(1 / self.rate))

    def _forget_idle(self, now: float) -> None:
        """Drop full buckets (addresses that stopped failing); if none, start afresh:
        the map stays bounded whatever an attacker spreads over addresses."""
        idle = [a for a, b in self._buckets.items() if b.available(now) >= self.burst]
        for address in idle:
            del self._buckets[address]
        if len(self._buckets) >= self.max_addresses:
            self._buckets.clear()


class Authenticator:
    """Resolves the ``Caller`` of a request in one mode (see the module docstring)."""

    def __init__(
        self,
        mode: str,
        *,
        clock: Clock,
        shell_enabled: bool,
        loopback: bool,
        tokens: TokenStore | None = None,
        shell_users: frozenset[str] = frozenset(),
        cache_seconds: float = CACHE_SECONDS,
        limiter: FailureLimiter | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown auth mode {mode!r}")
        if mode == "token" and tokens is None:
            raise ValueError("token mode needs a token store")
        self.mode = mode
        self._clock = clock
        self._shell_enabled = shell_enabled
        self._loopback = loopback
        self._tokens = tokens
        self._shell_users = shell_users
        self._cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[ApiToken, float]] = {}
        self.limiter = limiter or FailureLimiter()

    async def authenticate(self, request: Request) -> Caller:
        if self.mode == "header":
            user = header_user(request)
            return Caller(user, self._shell(user in self._shell_users))
        try:
            token = await self._token(request)
        except Unauthenticated:
            address = request.client.host if request.client else "unknown"
            wait = self.limiter.charge(address, self._clock.monotonic())
            if wait is not None:
                raise TooManyFailures(
                    f"too many failed authentications from {address}; retry in {wait} s", wait
                ) from None
            raise
        return Caller(token.user_id, self._shell(token.allow_shell))

    def _shell(self, allowed: bool) -> bool:
        return self._shell_enabled and (self._loopback or allowed)

    async def _token(self, request: Request) -> ApiToken:
        values = request.headers.getlist("authorization")
        if len(values) > 1:
            raise ValidationError("send the Authorization header once", field="Authorization")
        if not values or not values[0].strip():
            raise Unauthenticated(
                "the Authorization header is required: 'Authorization: Bearer <token>'",
                code="missing_token",
            )
        scheme, _, secret = values[0].strip()[:MAX_AUTHORIZATION].partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer":
            raise Unauthenticated(
                "the Authorization header must be 'Bearer <token>'", code="invalid_token"
            )
        if not well_formed(secret):
            raise Unauthenticated("the bearer token is malformed", code="invalid_token")
        token = await self._lookup(token_hash(secret))
        if token is None:
            raise Unauthenticated("the bearer token is not valid", code="invalid_token")
        if token.revoked_at is not None:
            raise Unauthenticated("the bearer token was revoked", code="invalid_token")
        if not token.usable(self._clock.now()):
            raise Unauthenticated("the bearer token has expired", code="invalid_token")
        return token

    async def _lookup(self, digest: bytes) -> ApiToken | None:
        """The stored token, from the cache while it is fresh (unknown hashes are never
        cached: a token made a moment ago works at once)."""
        now = self._clock.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < self._cache_seconds:
            return cached[0]
        assert self._tokens is not None
        token = await self._tokens.token_by_hash(digest)
        if token is None:
            self._cache.pop(digest, None)
            return None
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[digest] = (token, now)
        return token


async def authenticate(request: Request) -> Caller:
    """Authenticate ``request`` with the app's ``Authenticator`` and remember the caller
    on it (``http.user_of`` and ``http.shell_allowed`` read it)."""
    authenticator: Authenticator = request.app.state.auth
    caller = await authenticator.authenticate(request)
    request.state.caller = caller
    return caller
