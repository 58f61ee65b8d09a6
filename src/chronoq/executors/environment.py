"""The environment a job's processes see: an allowlist of the worker's, nothing secret.

A shell job is code from a user; it must not read the worker's store URL, cloud
credentials or tokens from its environment (DESIGN §8). A deny list of
secret-looking names always misses one (``DB_PASS``, ``OPENAI_KEY``,
``SENTRY_DSN``, ``GH_PAT``, ``SSH_AUTH_SOCK``), so jobs get only the variables a
shell needs to behave, by exact name (``ALLOWED_NAMES``: ``PATH``, ``HOME``,
``LANG``, ``TZ``, ``TMPDIR``, ``TERM``, ``USER``, ``LOGNAME``, ``SHELL``) or by
prefix (``ALLOWED_PREFIXES``: the locale's ``LC_*``). Everything else is dropped,
``CHRONOQ_*`` settings included; the executor then adds the run's own
``CHRONOQ_JOB_ID``, ``CHRONOQ_RUN_ID``, ``CHRONOQ_ATTEMPT`` and
``CHRONOQ_SCHEDULED_FOR`` (``ExecutionRequest.run_environment``).

Names are matched exactly (case-sensitive, as the OS does). The environment is only
one way in: the node also marks itself non-dumpable (``runtime.hardening``) so a
job running as another user cannot read ``/proc/<server>/environ``.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ALLOWED_NAMES", "ALLOWED_PREFIXES", "is_passed_to_jobs", "scrubbed_environment"]

ALLOWED_NAMES: frozenset[str] = frozenset(
    {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "USER", "LOGNAME", "SHELL"}
)
ALLOWED_PREFIXES: tuple[str, ...] = ("LC_",)


def is_passed_to_jobs(name: str) -> bool:
    """Whether the variable ``name`` is passed on to jobs (exact, case-sensitive)."""
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def scrubbed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Return a new dict of the variables of ``environ`` that ``is_passed_to_jobs`` allows.

    Pure: reads only its argument (pass ``os.environ`` explicitly), never mutates it.
    """
    return {name: value for name, value in environ.items() if is_passed_to_jobs(name)}
