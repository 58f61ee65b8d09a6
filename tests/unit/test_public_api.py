"""The public surface, pinned: what ``import chronoq`` exports and the exception tree."""

from __future__ import annotations

import inspect

import pytest

import chronoq
import chronoq.errors
from chronoq import errors
from chronoq.client import Client

EXPECTED_ALL = ["Client", "__version__"]

# child -> parent, as drawn in the chronoq.errors module docstring.
TREE: dict[str, str] = {
    "ValidationError": "ChronoqError",
    "ScheduleError": "ValidationError",
    "NotFoundError": "ChronoqError",
    "ConflictError": "ChronoqError",
    "ForbiddenError": "ChronoqError",
    "PayloadTooLargeError": "ChronoqError",
    "LimitExceededError": "ChronoqError",
    "UnavailableError": "ChronoqError",
    "ConfigError": "ChronoqError",
}


def test_all_is_pinned() -> None:
    assert chronoq.__all__ == EXPECTED_ALL


def test_every_name_in_all_exists() -> None:
    for name in chronoq.__all__:
        assert hasattr(chronoq, name), name


def test_public_names_are_all_listed() -> None:
    public = {
        name
        for name, value in vars(chronoq).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public <= set(chronoq.__all__)


def test_client_is_the_client_class() -> None:
    assert chronoq.Client is Client
    assert inspect.isclass(chronoq.Client)


def test_version() -> None:
    assert chronoq.__version__ == "0.1.0"
    from importlib.metadata import version

    assert version("chronoq") == chronoq.__version__


def _exception_classes() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }


def test_errors_module_defines_exactly_the_drawn_classes() -> None:
    assert set(_exception_classes()) == {"ChronoqError", *TREE}


def test_chronoq_error_is_the_root() -> None:
    assert errors.ChronoqError.__bases__ == (Exception,)


@pytest.mark.parametrize(("child", "parent"), sorted(TREE.items()))
def test_tree_edges(child: str, parent: str) -> None:
    cls = getattr(errors, child)
    assert cls.__bases__ == (getattr(errors, parent),)
    assert issubclass(cls, errors.ChronoqError)


def test_the_docstring_draws_the_same_tree() -> None:
    doc = chronoq.errors.__doc__ or ""
    for name in ("ChronoqError", *TREE):
        assert name in doc, f"{name} missing from the drawn tree"
    # ScheduleError hangs under ValidationError: it is indented one level deeper.
    lines = doc.splitlines()
    indent = {
        name: next(ln.index(name) for ln in lines if f" {name} " in f" {ln} ")
        for name in ("ChronoqError", *TREE)
    }
    assert indent["ScheduleError"] > indent["ValidationError"] > indent["ChronoqError"]
    for name in TREE:
        if name != "ScheduleError":
            assert indent[name] == indent["ValidationError"], name


def test_validation_error_carries_message_and_field() -> None:
    exc = errors.ValidationError("bad cron", field="cron_schedule")
    assert str(exc) == "bad cron"
    assert exc.message == "bad cron"
    assert exc.field == "cron_schedule"
    assert errors.ValidationError("x").field is None
    sched = errors.ScheduleError("bad tz", field="timezone")
    assert isinstance(sched, errors.ValidationError)
    assert sched.field == "timezone"


def test_every_error_has_a_docstring() -> None:
    for name, cls in _exception_classes().items():
        assert cls.__doc__, name
