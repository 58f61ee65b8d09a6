"""``chronoq token create|list|revoke``: API tokens for ``--auth token`` (docs/auth.md).

They open the store directly, like ``chronoq migrate``: ``--store`` (PostgreSQL) or
the embedded SQLite database in ``--data-dir``, also while a server runs on it.
``create`` prints the token once, alone on stdout (``TOKEN=$(chronoq token create
--user alice)``); the store keeps only its SHA-256. ``list`` shows ids (the token's
first 11 characters), never secrets. A revocation reaches every api process within
``services.api.auth.CACHE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from chronoq.domain.clock import format_rfc3339, parse_rfc3339
from chronoq.domain.durations import parse_go_duration
from chronoq.domain.tokens import new_token, token_hash, token_id
from chronoq.errors import ChronoqError, ConflictError, ValidationError
from chronoq.ports.tokens import ApiToken
from chronoq.runtime.config import env_name
from chronoq.services.api.http import MAX_USER_ID

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
_DAYS = re.compile(r"^([0-9]+)d$")


def _store_options(command: F) -> F:
    command = click.option(
        "--data-dir", "data_dir", envvar=env_name("data_dir"), default=Path(".chronoq"),
        type=click.Path(path_type=Path), show_default=True,
        help="Data dir of the embedded server (its SQLite store).",
    )(command)  # fmt: skip
    return click.option(
        "--store", "store", envvar=env_name("store"), default=None,
        help="Store URL (postgresql://... or sqlite:///path); default: SQLite in the data dir.",
    )(command)  # fmt: skip


def _with_store(store: str | None, data_dir: Path, work: Callable[[Any], Awaitable[T]]) -> T:
    from chronoq.runtime.wiring import token_store

    async def main() -> T:
        admin = token_store(store, data_dir)
        await admin.start()
        try:
            return await work(admin)
        finally:
            await admin.close()

    try:
        return asyncio.run(main())
    except ChronoqError as exc:
        click.echo(f"chronoq: {exc}", err=True)
        sys.exit(1)


def parse_expiry(text: str, now: datetime) -> datetime:
    """``30d``, a Go duration (``12h``, ``90m``) from now, or an RFC 3339 instant."""
    days = _DAYS.match(text.strip())
    try:
        if days:
            when = now + timedelta(days=int(days.group(1)))
        elif text.strip()[:1].isdigit() and not re.match(r"^\d{4}-", text.strip()):
            when = now + parse_go_duration(text)
        else:
            when = parse_rfc3339(text.strip())
    except (ValidationError, ValueError, OverflowError):
        raise click.BadParameter(
            "use 30d, 12h, 90m or an RFC 3339 instant (2030-01-31T00:00:00Z)",
            param_hint="'--expires'",
        ) from None
    if when <= now:
        raise click.BadParameter("the expiry must be in the future", param_hint="'--expires'")
    return when


def _check_user(user: str) -> str:
    user = user.strip()
    if not user or len(user) > MAX_USER_ID or not user.isprintable():
        raise click.BadParameter(
            f"a user id is 1 to {MAX_USER_ID} printable characters", param_hint="'--user'"
        )
    return user


@click.group(name="token")
def token_group() -> None:
    """Manage API tokens for --auth token (docs/auth.md)."""


@token_group.command(name="create")
@click.option("--user", required=True, help="The user the token acts as.")
@click.option("--allow-shell", is_flag=True, help="May submit cmd: jobs off loopback.")
@click.option("--expires", metavar="WHEN", help="30d, 12h, or an RFC 3339 instant (default never).")
@_store_options
def create(
    user: str, allow_shell: bool, expires: str | None, store: str | None, data_dir: Path
) -> None:
    """Make a token and print it once (only its hash is kept)."""
    now = datetime.now(UTC)
    token = ApiToken(
        token_id="", user_id=_check_user(user), allow_shell=allow_shell, created_at=now,
        expires_at=None if expires is None else parse_expiry(expires, now),
    )  # fmt: skip

    async def work(admin: Any) -> tuple[str, ApiToken]:
        for _ in range(3):  # an id collision is astronomically rare: draw again
            secret = new_token()
            made = replace(token, token_id=token_id(secret))
            try:
                await admin.create_token(made, token_hash(secret))
            except ConflictError:
                continue
            return secret, made
        raise ConflictError("could not store a new token (id collisions); try again")

    secret, made = _with_store(store, data_dir, work)
    click.echo(secret)
    click.echo(
        f"token {made.token_id} for {made.user_id} (shell jobs: "
        f"{'yes' if made.allow_shell else 'no'}, expires: {_when(made.expires_at)}); "
        "shown once: keep it now",
        err=True,
    )


@token_group.command(name="list")
@click.option("--user", default=None, help="Only this user's tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_store_options
def list_command(user: str | None, as_json: bool, store: str | None, data_dir: Path) -> None:
    """Tokens, oldest first: id, user, created, expires, shell, revoked (no secrets)."""
    tokens: list[ApiToken] = _with_store(store, data_dir, lambda admin: admin.list_tokens(user))
    if as_json:
        click.echo(json.dumps([_json(t) for t in tokens], indent=2, ensure_ascii=False))
        return
    header = ("ID", "USER", "CREATED", "EXPIRES", "SHELL", "REVOKED")
    rows = [header] + [
        (t.token_id, t.user_id, _when(t.created_at), _when(t.expires_at),
         "yes" if t.allow_shell else "no", _when(t.revoked_at, "-"))
        for t in tokens
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@token_group.command(name="revoke")
@click.argument("token_id")
@_store_options
def revoke(token_id: str, store: str | None, data_dir: Path) -> None:
    """Revoke a token by its id (see list); api processes refuse it within seconds."""
    now = datetime.now(UTC)
    found: ApiToken | None = _with_store(
        store, data_dir, lambda admin: admin.revoke_token(token_id.strip(), now)
    )
    if found is None:
        click.echo(f"chronoq: no token with id {token_id!r} (see chronoq token list)", err=True)
        sys.exit(1)
    click.echo(f"revoked {found.token_id} ({found.user_id}) at {_when(found.revoked_at)}")


def _when(value: datetime | None, never: str = "never") -> str:
    return never if value is None else format_rfc3339(value)


def _json(token: ApiToken) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "user_id": token.user_id,
        "allow_shell": token.allow_shell,
        "created_at": format_rfc3339(token.created_at),
        "expires_at": None if token.expires_at is None else format_rfc3339(token.expires_at),
        "revoked_at": None if token.revoked_at is None else format_rfc3339(token.revoked_at),
    }


TOKEN_COMMANDS: tuple[click.Command, ...] = (token_group,)
