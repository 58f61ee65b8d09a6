"""Who ``cmd:`` jobs run as (``executors/identity.py``), decided from the setting and the
server's own uid (passed in, so every case runs whatever user runs the tests)."""

from __future__ import annotations

import pwd

import pytest

from chronoq.errors import ConfigError
from chronoq.executors.identity import RunAs, resolve_shell_user

NOBODY = pwd.getpwnam("nobody")


def test_a_root_server_runs_jobs_as_nobody_by_default() -> None:
    assert resolve_shell_user("", euid=0) == RunAs("nobody", NOBODY.pw_uid, NOBODY.pw_gid)


def test_root_may_keep_jobs_root_by_saying_so() -> None:
    assert resolve_shell_user("root", euid=0) is None


def test_a_server_that_is_not_root_runs_jobs_as_itself() -> None:
    assert resolve_shell_user("", euid=NOBODY.pw_uid) is None
    assert resolve_shell_user("nobody", euid=NOBODY.pw_uid) is None  # already that user


def test_a_server_that_is_not_root_cannot_switch() -> None:
    with pytest.raises(ConfigError, match="shell_user: only root can run jobs as 'root'"):
        resolve_shell_user("root", euid=NOBODY.pw_uid)


def test_an_unknown_user_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="shell_user: no user 'no-such-5b1e'"):
        resolve_shell_user("no-such-5b1e", euid=0)
