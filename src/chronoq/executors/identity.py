"""Who ``cmd:`` jobs run as (``--shell-user``): an unprivileged user, not the server's.

A shell job is a user's code. Run as the server's user it could read what the server
can: the SQLite files and blob folder (0600/0700, but the owner's), and as root any
process's ``/proc/<pid>/environ`` (root has ``CAP_SYS_PTRACE``, which the server's
non-dumpable flag does not stop). So when Chronoq runs as root, jobs run as ``nobody``
by default; ``--shell-user NAME`` picks another user, and ``--shell-user root`` keeps
them root (an explicit choice). A server that is not root cannot switch users: jobs run
as its own user, and naming another one is a start-up error.

The switch happens in the child between fork and exec, AFTER it joined its cgroup (only
root may move a process into one): supplementary groups dropped, then gid, then uid;
the parent-death signal is set again, since a change of credentials clears it.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from chronoq.errors import ConfigError

__all__ = ["DEFAULT_ROOT_SHELL_USER", "RunAs", "resolve_shell_user"]

DEFAULT_ROOT_SHELL_USER = "nobody"


@dataclass(frozen=True, slots=True)
class RunAs:
    """A user to switch to in the child; ``None`` anywhere means "stay as we are"."""

    name: str
    uid: int
    gid: int

    def drop_privileges(self) -> None:
        """In the child only: become this user for good (no way back)."""
        os.setgroups([])
        os.setgid(self.gid)
        os.setuid(self.uid)


def resolve_shell_user(setting: str, *, euid: int | None = None) -> RunAs | None:
    """The user ``cmd:`` jobs switch to, or None to run them as this process's user.

    ``setting`` is ``--shell-user`` (empty: ``nobody`` when root, else no switch).
    """
    euid = os.geteuid() if euid is None else euid
    name = setting or (DEFAULT_ROOT_SHELL_USER if euid == 0 else "")
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(
            f"shell_user: no user {name!r} on this machine (create it, or pick another)"
        ) from None
    if entry.pw_uid == euid:
        return None  # already that user (root for --shell-user root)
    if euid != 0:
        raise ConfigError(
            f"shell_user: only root can run jobs as {name!r}; this server runs as uid {euid}"
        )
    return RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid)
