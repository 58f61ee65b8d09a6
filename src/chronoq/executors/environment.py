"""The environment a job's processes see: the worker's, minus anything secret.

A shell job is code from a user; it must not read the worker's store URL, cloud
credentials or tokens from its environment (DESIGN §8). The rules, on the
upper-cased name:

* dropped if it starts with one of ``DROPPED_PREFIXES`` (``CHRONOQ_`` settings,
  ``AWS_*``, libpq's ``PG*``, ``DATABASE_URL``, ``REDIS_URL``);
* dropped if it contains one of ``DROPPED_FRAGMENTS`` (``PASSWORD``, ``SECRET``,
  ``TOKEN``, ``CREDENTIAL``, ``API_KEY``, ...);
* kept otherwise (``PATH``, ``HOME``, ``LANG``, ``TZ``, ...).

This is a deny list, so it is a safety net, not a sandbox: a credential under an
innocent name passes. Operators who need more run workers with a minimal
environment.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DROPPED_FRAGMENTS", "DROPPED_PREFIXES", "is_secret_name", "scrubbed_environment"]

DROPPED_PREFIXES: tuple[str, ...] = (
    "CHRONOQ_",
    "AWS_",
    "PG",
    "DATABASE_URL",
    "REDIS_URL",
)
DROPPED_FRAGMENTS: tuple[str, ...] = (
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "CREDENTIAL",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
)


def is_secret_name(name: str) -> bool:
    """Whether the variable ``name`` is withheld from jobs (case-insensitive)."""
    upper = name.upper()
    return upper.startswith(DROPPED_PREFIXES) or any(frag in upper for frag in DROPPED_FRAGMENTS)


def scrubbed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Return a new dict of ``environ`` without the names ``is_secret_name`` rejects.

    Pure: reads only its argument (pass ``os.environ`` explicitly), never mutates it.
    """
    return {name: value for name, value in environ.items() if not is_secret_name(name)}
