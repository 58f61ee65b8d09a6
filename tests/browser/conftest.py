"""Browser tests of the dashboard: Playwright for Python driving Debian's ``chromium``
(``/usr/bin/chromium``; never ``playwright install``), against real ``chronoq up``
servers on free loopback ports (the integration harness's ``ServerFactory``).

One browser for the session, servers per module, a fresh browser context (its own
sessionStorage) per test. Screenshots go to ``$CHRONOQ_TEST_ARTIFACTS`` when set, else
to ``browser-screenshots`` under pytest's temporary folder; the path is printed.

Without chromium or the playwright package these tests fail (they do not skip: a CI
that lost its browser must say so), unless ``CHRONOQ_SKIP_BROWSER=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.conftest import ServerFactory

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EXPECT_MS = 10_000
"""How long an ``expect`` waits for the page (a loaded CI machine is slower than a laptop)."""
WIDE: ViewportSize = {"width": 1280, "height": 900}
NARROW: ViewportSize = {"width": 390, "height": 844}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser" in str(item.path):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One browser per module, closed when the module ends: Playwright's sync API keeps an
    asyncio event loop running in the main thread while it is open, and every later test
    that calls ``asyncio.run`` (most of the suite) would fail with "cannot be called from
    a running event loop" if it stayed open to the end of the session."""
    if os.environ.get("CHRONOQ_SKIP_BROWSER") == "1":
        pytest.skip("CHRONOQ_SKIP_BROWSER=1")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[test]'")
    expect.set_options(timeout=EXPECT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path_factory.mktemp("browser-servers"))
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("CHRONOQ_TEST_ARTIFACTS")
    folder = Path(where) if where else tmp_path_factory.getbasetemp() / "browser-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {folder}")
    return folder


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=WIDE, accept_downloads=True)
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A tab; at the end, no script error and no console error may have happened on it."""
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    opened.on("console", lambda msg: _console(problems, msg.type, msg.text))
    yield opened
    assert not problems, problems


def _console(problems: list[str], kind: str, text: str) -> None:
    """Console errors other than the browser's note of an HTTP error answer (a refused
    token is a 401 the page shows on purpose): CSP violations, failed module loads."""
    if kind == "error" and not text.startswith("Failed to load resource"):
        problems.append(f"console: {text}")
