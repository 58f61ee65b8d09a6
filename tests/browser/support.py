"""Shortcuts for the dashboard's browser tests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from playwright.sync_api import Page, expect

if TYPE_CHECKING:
    from tests.integration.conftest import ServerHandle


def sign_in_as(page: Page, server: ServerHandle, user: str) -> None:
    """Open the dashboard at ``/`` (redirected to ``/dashboard/``), sign in with a user id."""
    page.goto(server.url + "/")
    page.get_by_label("User id").fill(user)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()


def sign_in_with_token(page: Page, server: ServerHandle, token: str) -> None:
    page.goto(server.url + "/dashboard/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def shot(page: Page, folder: Path, name: str) -> Path:
    """A full-page screenshot ``name.png`` in ``folder`` (the test artifacts)."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000, path
    return path


def no_horizontal_scroll(page: Page) -> tuple[int, int]:
    """(scrollWidth, clientWidth) of the document: equal when nothing sticks out."""
    sizes = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    return int(sizes[0]), int(sizes[1])
