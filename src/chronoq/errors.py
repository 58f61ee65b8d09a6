"""The one exception root of Chronoq.

::

    ChronoqError
    ├── ValidationError        bad input from a caller; nothing was changed (HTTP 400)
    │   └── ScheduleError      an invalid cron, ``@every`` or timezone
    ├── NotFoundError          no such job for this user (HTTP 404, same for others' jobs)
    ├── ConflictError          the object is not in a state that allows the change (HTTP 409)
    ├── ForbiddenError         the operation is not allowed here, e.g. ``cmd:`` off (HTTP 403)
    ├── PayloadTooLargeError   body over the configured limit (HTTP 413)
    ├── LimitExceededError     a per-user limit refuses it now; retry later (HTTP 429)
    ├── UnavailableError       a backend is down; retry later (HTTP 503)
    └── ConfigError            a bad setting; raised at start-up

Adapters translate driver errors into these at their boundary.
"""

from __future__ import annotations


class ChronoqError(Exception):
    """Root of every error Chronoq raises on purpose."""


class ValidationError(ChronoqError):
    """Bad input; ``field`` names the offending field when there is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ScheduleError(ValidationError):
    """An invalid schedule expression or timezone."""


class NotFoundError(ChronoqError):
    """No such object visible to the caller."""


class ConflictError(ChronoqError):
    """The object's state does not allow the change."""


class ForbiddenError(ChronoqError):
    """The operation is refused by configuration."""


class PayloadTooLargeError(ChronoqError):
    """The request body is over the limit."""


class LimitExceededError(ChronoqError):
    """A per-user limit (``domain.limits``) refuses the operation; nothing was changed.
    ``code`` names the limit (``too_many_active_jobs``, ``too_many_fires``);
    ``retry_after`` is the seconds after which trying again may succeed."""

    def __init__(self, message: str, *, code: str, retry_after: int) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = max(1, retry_after)


class UnavailableError(ChronoqError):
    """A backend cannot be reached right now; nothing was changed."""


class ConfigError(ChronoqError):
    """A setting is invalid."""
