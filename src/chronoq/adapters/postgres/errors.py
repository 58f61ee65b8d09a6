"""Driver errors -> Chronoq errors, at the adapter boundary (STYLE 15).

* the server cannot be reached, went away, shuts down, refuses connections,
  or the pool is closed: ``UnavailableError`` (retry later);
* a value the driver cannot encode: ``ValidationError``;
* a unique key says the row exists: ``ConflictError``;
* deadlocks and serialization failures are transient: ``transient`` tells the
  transaction runner to retry; if they persist they become ``UnavailableError``.

Anything else is a bug and propagates as is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from chronoq.adapters.postgres.driver import asyncpg
from chronoq.errors import ConflictError, UnavailableError, ValidationError

_UNREACHABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: connection exceptions
    asyncpg.exceptions.OperatorInterventionError,  # 57: admin/crash shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.InternalClientError,
    OSError,  # refused, reset, unreachable (ConnectionRefusedError is one)
    TimeoutError,  # connect timeout
)

_BAD_VALUE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions._base.DataError,  # the driver cannot encode an argument (an InterfaceError)
    asyncpg.DataError,  # class 22 from the server, e.g. a NUL character in a text value
)

TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Run a block, turning driver errors into Chronoq's; ``what`` names the operation."""
    try:
        yield
    except _BAD_VALUE as exc:
        raise ValidationError(f"{what}: invalid value: {exc}") from exc
    except asyncpg.UniqueViolationError as exc:
        raise ConflictError(f"{what}: {exc.detail or exc}") from exc
    except TRANSIENT as exc:
        raise UnavailableError(f"{what}: PostgreSQL kept aborting the transaction: {exc}") from exc
    except asyncpg.exceptions.LockNotAvailableError as exc:  # our lock_timeout fired
        raise UnavailableError(f"{what}: a lock stayed busy too long; try again: {exc}") from exc
    except asyncpg.InterfaceError as exc:  # a closed pool, a lost connection
        raise UnavailableError(f"{what}: PostgreSQL is unavailable: {exc}") from exc
    except _UNREACHABLE as exc:
        raise UnavailableError(f"{what}: PostgreSQL is unavailable: {exc}") from exc
