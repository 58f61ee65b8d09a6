"""The jobs list's filters and search in a real browser (issue 10): they narrow the list
through the API (one list request per page, no runs request per row), they have labels
and work by keyboard alone, another user's job is neither listed nor reachable by URL,
the token mode's header names the user, and every page fits 1,280 and 390 px with no
horizontal scroll (screenshots of each page at both widths)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.integration.auth_support import make_token
from tests.integration.helpers import create, make_client, new_user, wait_runs

from .conftest import NARROW, WIDE
from .support import no_horizontal_scroll, shot, sign_in_as, sign_in_with_token

if TYPE_CHECKING:
    from tests.integration.conftest import ServerFactory, ServerHandle

FUTURE = "2099-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def server(servers: ServerFactory) -> ServerHandle:
    return servers(name="header")


@pytest.fixture
def user(server: ServerHandle) -> Iterator[tuple[str, httpx.Client]]:
    name = new_user("lists")
    with make_client(server.url, name) as client:
        yield name, client


def _seed(client: httpx.Client) -> dict[str, Any]:
    """A finished one-shot job, a paused and a running-later recurring one, and future
    one-shot jobs of two projects."""
    done = create(client, project_id="alpha", payload="echo done")
    nightly = create(client, project_id="beta-nightly", payload="x", cron_schedule="0 3 * * *")
    paused = create(client, project_id="beta-weekly", payload="x", cron_schedule="0 4 * * 1")
    assert client.post(f"/v1/jobs/{paused['job_id']}:pause").status_code == 200
    later = [create(client, project_id=f"gamma-{i}", payload="x", next_fire_at=FUTURE)
             for i in range(3)]  # fmt: skip
    runs = wait_runs(client, done["job_id"], lambda r: r[0]["status"] == "COMPLETED", 15, "done")
    return {"done": done, "nightly": nightly, "paused": paused, "later": later, "run": runs[0]}


def _shown(page: Page) -> list[str]:
    """The full job ids of the rows shown (each row carries it for screen readers)."""
    cells = page.locator("table.jobs tbody tr td:first-child .visually-hidden")
    return [t.strip() for t in cells.all_inner_texts()]


def test_filters_and_search_narrow_the_list(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client], shots: Path
) -> None:
    name, client = user
    jobs = _seed(client)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/" in r.url else None)
    sign_in_as(page, server, name)
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(6)

    # The last run comes with the list: its badge links to the run.
    done_row = rows.filter(has_text="alpha")
    link = done_row.get_by_role("link", name="COMPLETED")
    expect(link).to_have_attribute(
        "href", f"#/jobs/{jobs['done']['job_id']}/runs/{jobs['run']['run_id']}"
    )
    expect(done_row.get_by_role("img", name="1 of the last 1 ended runs completed")).to_be_visible()
    expect(rows.filter(has_text="beta-nightly").get_by_text("no run yet")).to_be_visible()
    assert not [u for u in asked if "/runs" in u], asked  # no runs request per row

    page.get_by_role("checkbox", name="paused").check()
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    assert _shown(page) == [jobs["paused"]["job_id"]]
    expect(page).to_have_url(re.compile(r"#/jobs\?status=PAUSED$"))

    page.get_by_role("checkbox", name="paused").uncheck()
    page.get_by_label("Kind").select_option("recurring")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(2)
    page.get_by_label("Search").fill("nightly")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    assert _shown(page) == [jobs["nightly"]["job_id"]]
    shot(page, shots, "jobs-filtered")

    page.reload()  # the filters live in the address: a reload keeps them
    expect(rows).to_have_count(1)
    expect(page.get_by_label("Search")).to_have_value("nightly")
    expect(page.get_by_label("Kind")).to_have_value("recurring")

    page.get_by_role("link", name="Clear filters").click()
    expect(rows).to_have_count(6)
    later = jobs["later"][1]["job_id"]
    page.get_by_label("Search").fill(later[:13].upper())  # the start of an id, any case
    page.get_by_label("Search").press("Enter")
    expect(rows).to_have_count(1)
    assert _shown(page) == [later]
    page.get_by_label("Search").fill("gamma")
    page.get_by_role("checkbox", name="completed").check()
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("No jobs match.")).to_be_visible()
    expect(page.get_by_role("link", name="Show every job")).to_be_visible()

    lists = [u for u in asked if "/v1/jobs?" in u]
    assert all("/runs" not in u for u in asked), asked
    assert any("status=PAUSED" in u for u in lists), lists
    assert any("kind=recurring" in u and "q=nightly" in u for u in lists), lists


def test_queue_and_priority_from_the_form_to_the_job_page_and_the_queue_filter(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client], shots: Path
) -> None:
    name, client = user
    other = create(client, project_id="elsewhere", payload="x", next_fire_at=FUTURE)
    sign_in_as(page, server, name)
    page.goto(server.url + "/dashboard/#/submit")
    page.get_by_label("Project").fill("queued")
    page.get_by_label("Payload").fill("x")
    page.get_by_label("Queue").fill("reports eu")  # a space: the API refuses the name
    page.get_by_role("button", name="Submit job").click()
    queue = page.get_by_label("Queue")
    expect(queue).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[data-field="f-queue"] .field-error')).to_contain_text("queue")
    assert client.get("/v1/jobs", params={"queue": "reports"}).json()["items"] == []

    queue.fill("reports")
    page.get_by_label("Priority").fill("7")
    page.get_by_role("button", name="Submit job").click()
    expect(page.get_by_role("heading", name="Schedule and policies")).to_be_visible()
    facts = page.locator("dl")
    expect(facts.get_by_text("reports", exact=True)).to_be_visible()
    expect(facts.get_by_text("7", exact=True)).to_be_visible()
    [made] = client.get("/v1/jobs", params={"queue": "reports"}).json()["items"]
    assert (made["project_id"], made["queue"], made["priority"]) == ("queued", "reports", 7)

    page.goto(server.url + "/dashboard/#/jobs")
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(2)
    page.get_by_label("Queue").fill("reports")
    page.get_by_label("Queue").press("Enter")
    expect(rows).to_have_count(1)
    assert _shown(page) == [made["job_id"]] and other["job_id"] not in _shown(page)
    expect(page).to_have_url(re.compile(r"#/jobs\?queue=reports$"))
    shot(page, shots, "jobs-queue-filter")


def test_filter_controls_are_labelled_and_keyboard_usable(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client]
) -> None:
    name, client = user
    _seed(client)
    sign_in_as(page, server, name)
    form = page.get_by_role("search", name="Filter jobs")
    group = form.get_by_role("group", name="Status")
    for status in ("pending", "running", "paused", "completed", "failed", "cancelled"):
        expect(group.get_by_role("checkbox", name=status, exact=True)).to_be_visible()
    for label in ("Project", "Kind", "Queue", "Search", "Per page"):
        expect(form.get_by_label(label, exact=True)).to_be_visible()
    expect(form.get_by_label("Search", exact=True)).to_have_accessible_description(
        re.compile("Start of a job id")
    )

    # Keyboard alone: tab to the first status box, space ticks it, tab through the fields
    # in their visual order, Enter in a field applies.
    group.get_by_role("checkbox", name="pending").focus()
    expect(group.get_by_role("checkbox", name="pending")).to_be_focused()
    page.keyboard.press("Space")
    expect(group.get_by_role("checkbox", name="pending")).to_be_checked()
    order = []
    for _ in range(10):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate("() => document.activeElement.id || document.activeElement.textContent")
        )
    assert order == [
        "filter-status-running", "filter-status-paused", "filter-status-completed",
        "filter-status-failed", "filter-status-cancelled", "filter-project", "filter-kind",
        "filter-queue", "filter-q", "filter-limit",
    ], order  # fmt: skip
    page.keyboard.press("Shift+Tab")  # back to Search
    page.keyboard.type("gamma")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"status=PENDING.*q=gamma"))
    expect(page.locator("table.jobs tbody tr")).to_have_count(3)
    # After the navigation the focus is on the heading, and the controls keep the choice.
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_focused()
    expect(page.get_by_role("checkbox", name="pending")).to_be_checked()


def test_another_users_job_is_neither_listed_nor_reachable(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client]
) -> None:
    name, client = user
    mine = create(client, project_id="shared-name", payload="x", next_fire_at=FUTURE)
    with make_client(server.url, new_user("other")) as other:
        theirs = create(other, project_id="shared-name", payload="x", next_fire_at=FUTURE)
    sign_in_as(page, server, name)
    page.goto(f"{server.url}/dashboard/#/jobs?q=shared")
    expect(page.locator("table.jobs tbody tr")).to_have_count(1)
    assert _shown(page) == [mine["job_id"]]
    page.goto(f"{server.url}/dashboard/#/jobs?q={theirs['job_id']}")
    expect(page.get_by_text("No jobs match.")).to_be_visible()
    page.goto(f"{server.url}/dashboard/#/jobs/{theirs['job_id']}")
    expect(page.get_by_role("alert")).to_contain_text("not found")


def test_the_token_mode_header_and_overview_name_the_user(
    page: Page, servers: ServerFactory, shots: Path
) -> None:
    token_server = servers("--auth", "token", name="token")
    alice = new_user("alice")
    token = make_token(token_server, alice)
    sign_in_with_token(page, token_server, token)
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    expect(page.get_by_text(f"Signed in as {alice}", exact=True)).to_be_visible()
    page.get_by_role("link", name="Overview").click()
    you = page.locator("section", has=page.get_by_role("heading", name="You"))
    expect(you.locator(".facts dd").first).to_have_text(alice)
    expect(you.get_by_role("link", name="pending")).to_have_attribute(
        "href", "#/jobs?status=PENDING"
    )
    shot(page, shots, "overview-token-mode")


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280px", "390px"])
def test_every_page_fits_its_width_with_screenshots(
    page: Page,
    server: ServerHandle,
    user: tuple[str, httpx.Client],
    shots: Path,
    viewport: Any,
) -> None:
    name, client = user
    jobs = _seed(client)
    width = viewport["width"]
    page.set_viewport_size(viewport)
    job_id = jobs["done"]["job_id"]
    pages = {
        "login": "",
        "jobs": "#/jobs",
        "jobs-filtered": "#/jobs?status=PENDING,PAUSED&kind=recurring&q=beta",
        "job": f"#/jobs/{job_id}",
        "run": f"#/jobs/{job_id}/runs/{jobs['run']['run_id']}",
        "submit": "#/submit",
        "overview": "#/overview",
    }
    page.goto(server.url + "/")
    for label, hash_ in pages.items():
        if label == "jobs":
            sign_in_as(page, server, name)
        else:
            page.goto(f"{server.url}/dashboard/{hash_}")
        expect(page.locator("h1")).to_be_visible()
        expect(page.get_by_text("Loading…")).to_have_count(0)
        if label == "jobs-filtered":
            expect(page.locator("table.jobs tbody tr")).to_have_count(2)
        if label == "overview":
            expect(page.get_by_role("link", name="completed")).to_be_visible()
        scroll, client_width = no_horizontal_scroll(page)
        shot(page, shots, f"lists-{label}-{width}px")
        assert scroll <= client_width, (label, width, scroll, client_width)
