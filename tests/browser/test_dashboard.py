"""The dashboard in a real browser (headless Debian chromium through Playwright), against
a real ``chronoq up`` in the header auth mode and another in the token mode: sign-in,
the jobs list and its cursor pages, a job submitted from the form and its run appearing,
the API's field messages on the form, the job page's fires, runs, ledger and actions, the
run page's live status and download, tenant isolation, keyboard use and labels, and
every page at 390 px without horizontal scroll. Screenshots of every page are saved."""

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

from .conftest import NARROW
from .support import no_horizontal_scroll, shot, sign_in_as, sign_in_with_token

if TYPE_CHECKING:
    from tests.integration.conftest import ServerFactory, ServerHandle

RUN_DONE = 15_000  # ms: a one-shot job's run is claimed, run and completed well within this


@pytest.fixture(scope="module")
def server(servers: ServerFactory) -> ServerHandle:
    return servers(name="header")


@pytest.fixture(scope="module")
def token_server(servers: ServerFactory) -> ServerHandle:
    return servers("--auth", "token", name="token")


@pytest.fixture
def user(server: ServerHandle) -> Iterator[tuple[str, httpx.Client]]:
    name = new_user("dash")
    with make_client(server.url, name) as client:
        yield name, client


def test_a_job_submitted_from_the_form_shows_its_run_and_output(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client], shots: Path
) -> None:
    name, _ = user
    page.goto(server.url + "/")
    expect(page).to_have_url(re.compile(r"/dashboard/#/login"))
    shot(page, shots, "login-header-mode")
    sign_in_as(page, server, name)
    expect(page.get_by_text("No jobs match.")).to_be_visible()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()

    page.get_by_role("link", name="Submit a job").click()
    page.get_by_label("Project").fill("browser")
    page.get_by_label("Payload").fill("hello from the form")
    shot(page, shots, "submit")
    page.get_by_role("button", name="Submit job").click()

    expect(page.get_by_role("heading", name=re.compile(r"^Job "))).to_be_visible()
    runs = page.locator("table.runs")
    expect(runs.get_by_text("COMPLETED")).to_be_visible(timeout=RUN_DONE)
    expect(page.locator(".summary").get_by_text("COMPLETED")).to_be_visible(timeout=RUN_DONE)
    shot(page, shots, "job-one-shot")

    runs.locator("a.mono").first.click()
    expect(page.get_by_role("heading", name=re.compile(r"^Run "))).to_be_visible()
    expect(page.locator("pre.output")).to_have_text("Success: hello from the form")
    expect(page.get_by_text("Exit code")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the whole output").click()
    saved = Path(download.value.path())
    assert saved.read_text() == "Success: hello from the form"
    shot(page, shots, "run")

    page.get_by_role("link", name="Jobs", exact=True).click()
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_text("browser")).to_be_visible()
    expect(rows.first.get_by_text("COMPLETED").first).to_be_visible()
    spark = rows.first.get_by_role("img", name="1 of the last 1 ended runs completed")
    expect(spark.locator(".tick.s-completed")).to_have_count(1)
    shot(page, shots, "jobs")


def test_the_form_shows_the_apis_message_beside_the_field_it_names(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client], shots: Path
) -> None:
    name, client = user
    sign_in_as(page, server, name)
    page.goto(server.url + "/dashboard/#/submit")
    page.get_by_label("Project").fill("browser")
    page.get_by_label("Payload").fill("x")
    page.get_by_label("On a schedule").check()
    page.get_by_label("Schedule", exact=True).fill("*/15 * * * *")
    preview = page.get_by_label("Schedule preview")
    expect(preview.get_by_text("Every 15th minute", exact=False)).to_be_visible()
    expect(preview.locator("li")).to_have_count(5)
    shot(page, shots, "submit-preview")

    page.get_by_label("Schedule", exact=True).fill("61 * * * *")  # the preview refuses it
    cron_error = page.locator('[data-field="f-cron_schedule"] .field-error')
    expect(cron_error).to_contain_text("61")
    page.get_by_label("Schedule", exact=True).fill("*/15 * * * *")
    expect(cron_error).to_be_hidden()
    page.get_by_text("Schedule policies and idempotency").click()
    page.get_by_label("Jitter (seconds)").fill("-1")  # the API's own range check
    page.get_by_role("button", name="Submit job").click()
    jitter = page.get_by_label("Jitter (seconds)")
    expect(jitter).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[data-field="f-jitter_seconds"] .field-error')).to_contain_text(
        "jitter_seconds"
    )
    expect(jitter).to_be_focused()
    shot(page, shots, "submit-field-error")
    assert client.get("/v1/jobs").json()["items"] == []  # nothing was made


def test_another_users_job_is_not_visible(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client]
) -> None:
    name, client = user
    mine = create(client, project_id="mine", payload="a")
    with make_client(server.url, new_user("other")) as other:
        theirs = create(other, project_id="theirs", payload="b")
    sign_in_as(page, server, name)
    expect(page.locator("table.jobs").get_by_text("mine")).to_be_visible()
    expect(page.locator("table.jobs tbody tr")).to_have_count(1)
    expect(page.get_by_text("theirs")).to_have_count(0)
    page.goto(f"{server.url}/dashboard/#/jobs/{theirs['job_id']}")
    expect(page.get_by_role("alert")).to_contain_text("not found")
    page.goto(f"{server.url}/dashboard/#/jobs/{mine['job_id']}")
    expect(page.locator(".summary").get_by_text("mine")).to_be_visible()


def test_token_login_in_the_token_mode(page: Page, token_server: ServerHandle, shots: Path) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    alice_token = make_token(token_server, alice)
    for owner, token in ((alice, alice_token), (bob, make_token(token_server, bob))):
        with httpx.Client(
            base_url=token_server.url, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            create(client, project_id=f"of-{owner}", payload="x")
    sign_in_with_token(page, token_server, "cq_" + "A" * 43)  # well formed, never issued
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    shot(page, shots, "login-token-refused")
    sign_in_with_token(page, token_server, alice_token)
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    expect(page.get_by_text(f"of-{alice}")).to_be_visible()
    expect(page.get_by_text(f"of-{bob}")).to_have_count(0)
    # The header names the token's user, as the API says (GET /v1/whoami).
    expect(page.get_by_text(f"Signed in as {alice}", exact=True)).to_be_visible()
    shot(page, shots, "jobs-token-mode")
    # A token that stops working mid-visit (revoked, expired): the next call's 401 signs
    # the tab out and says why.
    page.evaluate(
        """() => sessionStorage.setItem('chronoq.session',
                 JSON.stringify({token: 'cq_' + 'B'.repeat(43)}))"""
    )
    # The next page's first call (the header's GET /v1/whoami for the new token) is a 401.
    page.get_by_role("link", name="Submit a job").click()
    expect(page.get_by_role("alert")).to_contain_text("Signed out: the bearer token is not valid")
    expect(page.get_by_label("API token")).to_be_visible()
    sign_in_with_token(page, token_server, alice_token)
    expect(page.get_by_text(f"of-{alice}")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_the_submit_form_is_labelled_and_keyboard_navigable(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client]
) -> None:
    sign_in_as(page, server, user[0])
    page.goto(server.url + "/dashboard/#/submit")
    expect(page.get_by_role("heading", name="Submit a job")).to_be_visible()
    page.get_by_text("Schedule policies and idempotency").click()  # open every part
    page.get_by_label("On a schedule").check()
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map((el) => el.outerHTML)"""
    )
    assert unlabelled == []
    page.get_by_label("Now, once").check()
    page.get_by_label("Project").focus()
    order = [_focused(page)]
    for _ in range(7):
        page.keyboard.press("Tab")
        order.append(_focused(page))
    assert order[:3] == ["f-project_id", "f-payload", "kind=now"], order
    assert order[3:5] == ["f-max_retries", "f-timeout_seconds"], order  # hidden parts skipped
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), outline

    page.get_by_label("Project").focus()  # the whole form by keyboard alone
    page.keyboard.type("keyboard")
    page.keyboard.press("Tab")
    page.keyboard.type("typed only")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowRight")  # radio group: "Once, at a time"
    assert _focused(page) == "kind=at"
    page.keyboard.press("ArrowLeft")
    page.get_by_role("button", name="Submit job").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile(r"^Job "))).to_be_visible()
    expect(page.locator("pre.payload")).to_have_text("typed only")


def _focused(page: Page) -> str:
    value: str = page.evaluate(
        "() => { const el = document.activeElement;"
        " return el.type === 'radio' ? `kind=${el.value}` : (el.id || el.tagName); }"
    )
    return value


def test_the_job_page_shows_fires_runs_ledger_and_its_actions_work(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client], shots: Path
) -> None:
    name, client = user
    job = create(client, project_id="every", payload="tick", cron_schedule="@every 1s")
    wait_runs(client, job["job_id"], lambda runs: len(runs) >= 2, 15, "two runs")
    sign_in_as(page, server, name)
    page.goto(f"{server.url}/dashboard/#/jobs/{job['job_id']}")
    expect(page.locator("#schedule-words")).to_contain_text("Every 1s")
    expect(page.locator("ol.fires li")).to_have_count(10)
    expect(page.locator("table.runs tbody tr").nth(1)).to_be_visible()
    expect(page.locator("figure.timeline .bar").nth(1)).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("Fire ledger"))).to_be_visible()
    shot(page, shots, "job-recurring")

    actions = page.get_by_role("group", name="Job actions")
    status = page.locator(".summary .badge")
    actions.get_by_role("button", name="Pause").click()
    expect(status).to_have_text("PAUSED")
    expect(actions.get_by_role("button", name="Pause")).to_be_disabled()
    actions.get_by_role("button", name="Resume").click()
    expect(status).not_to_have_text("PAUSED")
    actions.get_by_role("button", name="Trigger now").click()
    expect(page.get_by_role("status")).to_contain_text("queued")
    manual = client.get(f"/v1/jobs/{job['job_id']}/runs").json()["items"]
    assert any(run["manual"] for run in manual), manual
    actions.get_by_role("button", name="Edit…").click()
    edit = page.get_by_role("form", name="Edit job")
    expect(edit.get_by_label("Payload")).to_be_focused()
    expect(edit.get_by_label("Schedule", exact=True)).to_have_value("@every 1s")
    edit.get_by_label("Schedule", exact=True).fill("@every 2s")
    edit.get_by_label("Jitter (seconds)").fill("-5")
    edit.get_by_role("button", name="Save changes").click()
    expect(edit.locator('[data-field="f-jitter_seconds"] .field-error')).to_contain_text(
        "jitter_seconds"
    )
    edit.get_by_label("Jitter (seconds)").fill("0.5")
    edit.get_by_role("button", name="Save changes").click()
    expect(page.locator("#schedule-words")).to_contain_text("Every 2s")
    changed = client.get(f"/v1/jobs/{job['job_id']}").json()
    assert (changed["cron_schedule"], changed["jitter_seconds"]) == ("@every 2s", 0.5)
    actions.get_by_role("button", name="Cancel job…").click()
    actions.get_by_role("button", name="Yes, cancel it").click()
    expect(status).to_have_text("CANCELLED")
    assert client.get(f"/v1/jobs/{job['job_id']}").json()["status"] == "CANCELLED"
    shot(page, shots, "job-cancelled")


def test_the_run_page_follows_a_running_run(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client]
) -> None:
    name, client = user
    job = create(client, project_id="slow", payload="sleep:2s")
    runs = wait_runs(client, job["job_id"], lambda r: bool(r), 10, "a run")
    sign_in_as(page, server, name)
    page.goto(f"{server.url}/dashboard/#/jobs/{job['job_id']}/runs/{runs[0]['run_id']}")
    status = page.locator(".facts .badge").first
    expect(status).to_have_text(re.compile("QUEUED|RUNNING"))
    expect(status).to_have_text("COMPLETED", timeout=RUN_DONE)  # no reload: it polls


def test_the_jobs_list_pages_with_the_cursor_one_page_at_a_time(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client]
) -> None:
    name, client = user
    specs = [{"project_id": f"p{i % 2}", "payload": "x", "next_fire_at": "2099-01-01T00:00:00Z"}
             for i in range(30)]  # fmt: skip
    assert client.post("/v1/jobs:batch", json={"jobs": specs}).status_code == 201
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/jobs?" in r.url else None)
    sign_in_as(page, server, name)
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(25)
    page.get_by_role("button", name="Next →").click()
    expect(rows).to_have_count(5)
    expect(page.get_by_text("Page 2", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Next →")).to_be_disabled()
    page.get_by_role("button", name="← Previous").click()
    expect(rows).to_have_count(25)
    page.get_by_label("Project").fill("p1")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(15)
    expect(page.get_by_role("button", name="Next →")).to_be_disabled()
    pages = [u for u in asked if "limit=1&" not in u and not u.endswith("limit=1")]
    assert len(pages) == 4, pages  # one request per page shown, never the whole list
    assert all("limit=25" in u for u in pages), pages


def test_every_page_fits_390_px_without_horizontal_scroll(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client], shots: Path
) -> None:
    name, client = user
    # Sundays of March at 02:30 in New York: the second one is in the DST gap.
    job = create(client, project_id="narrow-" + "x" * 60, payload="y" * 300,
                 cron_schedule="30 2 * 3 0", timezone="America/New_York")  # fmt: skip
    trigger = client.post(f"/v1/jobs/{job['job_id']}:trigger")
    assert trigger.status_code == 201, trigger.text
    run: dict[str, Any] = trigger.json()
    wait_runs(client, job["job_id"], lambda r: r[0]["status"] == "COMPLETED", 15, "done")
    page.set_viewport_size(NARROW)
    page.goto(server.url + "/")
    pages = {
        "login": "",
        "jobs": "#/jobs",
        "job": f"#/jobs/{job['job_id']}",
        "run": f"#/jobs/{job['job_id']}/runs/{run['run_id']}",
        "submit": "#/submit",
        "overview": "#/overview",
    }
    for label, hash_ in pages.items():
        if label == "jobs":
            sign_in_as(page, server, name)
        else:
            page.goto(f"{server.url}/dashboard/{hash_}")
        expect(page.locator("h1")).to_be_visible()
        expect(page.get_by_text("Loading…")).to_have_count(0)
        if label == "job":
            gap = page.locator("ol.fires .badge.dst").get_by_text("DST gap")
            expect(gap.first).to_be_visible()
        scroll, client_width = no_horizontal_scroll(page)
        shot(page, shots, f"{label}-390px")
        assert scroll <= client_width, (label, scroll, client_width)


def test_the_overview_shows_the_servers_own_numbers(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client], shots: Path
) -> None:
    name, client = user
    job = create(client, project_id="counted", payload="z")
    wait_runs(client, job["job_id"], lambda r: r[0]["status"] == "COMPLETED", 15, "done")
    sign_in_as(page, server, name)
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    completed = page.locator("tr", has=page.get_by_text("COMPLETED", exact=True))
    total = completed.locator("td").nth(1)
    expect(total).to_have_text(re.compile(r"^[1-9]\d*$"))  # at least this test's run
    expect(page.locator(".facts", has_text="p50").locator("dd").first).to_have_text(
        re.compile(r"\d (ms|s)$")
    )
    expect(page.get_by_text("Runs waiting for a worker")).to_be_visible()
    expect(page.get_by_text("This process is the leader")).to_be_visible()
    backends = page.locator("section", has=page.get_by_role("heading", name="Backends"))
    for backend in ("store", "coordination", "blob"):  # the leader's look at each
        row = backends.locator("tr", has=page.get_by_text(backend, exact=True))
        expect(row.get_by_text("UP", exact=True)).to_be_visible()
    charts = page.get_by_role("img", name=re.compile("^(Runs finished per minute|Fire lag):"))
    expect(charts).to_have_count(2)
    # Drawn from the page's own scrapes, one every 5 s: lines once two intervals are in.
    expect(page.locator(".chart polyline").first).to_be_attached(timeout=20_000)
    shot(page, shots, "overview")


def test_the_files_are_served_by_chronoq_alone_with_a_strict_policy(server: ServerHandle) -> None:
    with httpx.Client(base_url=server.url) as plain:
        root = plain.get("/")
        assert root.status_code == 307 and root.headers["location"] == "/dashboard/"
        assert plain.get("/dashboard").headers["location"] == "/dashboard/"
        assert plain.get("/dashboard/config.json").json() == {"auth": "header"}
        index = plain.get("/dashboard/")
        assert index.status_code == 200 and "text/html" in index.headers["content-type"]
        policy = index.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert index.headers["x-content-type-options"] == "nosniff"
        refused = plain.get("/dashboard/", headers={"Host": "attacker.example"})
        assert refused.status_code == 421  # the API's Host allowlist covers the pages too
    static = Path(__file__).parents[2] / "src/chronoq/services/dashboard/static"
    files = [p for p in static.rglob("*") if p.is_file()]
    assert len(files) >= 10
    for path in files:
        # The SVG namespace is a name, never fetched (createElementNS needs it).
        text = path.read_text().replace('"http://www.w3.org/2000/svg"', '"svg-namespace"')
        assert not re.search(r"https?://|//cdn|@import", text), path  # nothing from elsewhere
        assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", text), (
            path  # text nodes only: no data can become markup
        )


def test_a_long_output_is_shown_in_part_and_downloaded_whole(
    page: Page, server: ServerHandle, user: tuple[str, httpx.Client]
) -> None:
    name, client = user
    job = create(client, project_id="long", payload="cmd:head -c 300000 /dev/zero | tr '\\0' a")
    runs = wait_runs(client, job["job_id"], lambda r: r[0]["status"] == "COMPLETED", 15, "done")
    assert runs[0]["output_truncated"], runs[0]  # the list carries only its head
    sign_in_as(page, server, name)
    page.goto(f"{server.url}/dashboard/#/jobs/{job['job_id']}/runs/{runs[0]['run_id']}")
    expect(page.get_by_text("Showing the first 200,000 characters")).to_be_visible()
    shown = page.evaluate("() => document.querySelector('pre.output').textContent")
    assert shown == "a" * 200_000
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the whole output").click()
    assert Path(download.value.path()).read_text() == "a" * 300_000
