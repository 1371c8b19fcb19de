"""The operator console: staff only, read-only, its numbers are the databases' own, and it follows a move live."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from playwright.sync_api import expect

from migrations_tooling import phases
from migrations_tooling.models import LagSample, MoveEvent, MoveRange, VerifyRun
from tests.browser import chromium
from tests.conftest import ALL_DATABASES
from tests.moves.support import QUICK_SETTINGS, Ledger, latest_move, on_db, seed, shardmove, wait_for_phase, wait_until
from tests.web.conftest import AppServer, start_app_server

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)]

PASSWORD = "correct horse battery"


@pytest.fixture
def staff(make_user: Any) -> Any:
    user = make_user(7, "operator", PASSWORD)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


def test_the_console_is_for_staff_only(make_user: Any, staff: Any) -> None:
    member = Client()
    member.force_login(make_user(8, "member"))
    for path in ("/ops/", "/ops/moves/", "/ops/advice/", "/ops/moves/1/", "/ops/moves/1/live"):
        anonymous = Client().get(path)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/"), path
        assert member.get(path).status_code == 403, path
    operator = Client()
    operator.force_login(staff)
    page = operator.get("/ops/")
    assert page.status_code == 200 and "Read-only by design" in page.content.decode()
    assert operator.get("/ops/moves/999/").status_code == 404
    assert operator.post("/ops/").status_code == 405  # nothing to post: it only reads


def sharded_rows(alias: str) -> int:
    return sum(
        on_db(alias, f"SELECT count(*) FROM {table}")[0][0] for table in ("content_generation", "content_usageevent")
    )


def test_the_shard_map_page_shows_the_rows_bytes_and_revisions_the_databases_hold(staff: Any) -> None:
    seed(Ledger(), "shard1", [10, 20, 30], per_user=40)
    seed(Ledger(), "shard2", [1000, 2000], per_user=25)
    connections.close_all()  # a backend reports its statistics when it ends
    operator = Client()
    operator.force_login(staff)

    def page_rows() -> dict[str, int] | None:
        html = operator.get("/ops/").content.decode()
        shown = {
            alias: int(value)
            for alias, value in re.findall(r'<tr data-alias="(\w+)">.*?class="rows" data-value="(\d+)"', html, re.S)
        }
        expected = {alias: sharded_rows(alias) for alias in ("shard1", "shard2")}  # the databases the map uses
        return shown if shown == expected else None

    shown = wait_until(page_rows, timeout=30, what="the console's rows to equal count(*) on every shard", poll=0.5)
    assert shown == {"shard1": 240, "shard2": 100}
    html = operator.get("/ops/").content.decode()
    for alias in ("shard1", "shard2"):
        size = on_db(alias, "SELECT pg_database_size(current_database())")[0][0]
        shown_size = int(re.search(rf'<tr data-alias="{alias}">.*?class="bytes" data-value="(\d+)"', html, re.S)[1])  # type: ignore[index]
        assert abs(shown_size - size) <= 256 * 1024  # the same figure, give or take a checkpoint's files
    versions = [row[0] for row in on_db("default", "SELECT version FROM shardrouter_shardmaprevision")]
    for version in versions[-3:]:
        assert f"<td>v{version}</td>" in html
    assert html.count('class="range"') == 2  # [0, 1000) and [1000, MAX)
    advice = operator.get("/ops/advice/?by=rows").content.decode()
    assert "manage.py shardmove start" in advice and "Heaviest / even share" in advice
    assert operator.get("/ops/advice/?by=colour").status_code == 400


@pytest.fixture
def app_server() -> Iterator[AppServer]:
    server = start_app_server(DJANGO_SETTINGS_MODULE=QUICK_SETTINGS)  # checks the password hashed in this process
    yield server
    server.process.terminate()
    server.process.wait(15)


@pytest.mark.slow
def test_a_move_page_follows_a_whole_move_live_with_the_numbers_of_the_journal(
    app_server: AppServer, staff: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Playwright's sync API keeps an event loop on this thread; the test's own queries run between its calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    seed(Ledger(), "shard1", [10, 20, 30], per_user=50)
    shardmove("start", "0", "500", "--to", "shard3")
    move = latest_move()
    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{app_server.url}/ops/moves/{move.id}/")
        page.fill("#id_username", "operator")
        page.fill("#id_password", PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name=re.compile(f"Move {move.id}: \\[0, 500\\)"))).to_be_visible()
        expect(page.locator("#read-only")).to_contain_text("Read-only by design")

        wait_for_phase(move.id, "catching_up")  # the page is not reloaded: it polls
        expect(page.locator("#phase")).to_have_text("catching_up", timeout=15_000)
        expect(page.locator("#rows-copied")).to_have_text("300", timeout=15_000)
        expect(page.locator("#timeline li.current")).to_have_text("catching_up")
        expect(page.locator("code.next").first).to_have_text(phases.next_steps(MoveRange.objects.get(id=move.id))[0])
        assert page.locator("button.copy").count() == 2
        wait_until(lambda: LagSample.objects.filter(move=move).exists(), timeout=10, what="a lag sample")
        expect(page.locator("#lag-chart polyline")).to_have_count(1, timeout=15_000)

        shardmove("verify", str(move.id))
        shardmove("switch-reads", str(move.id))
        expect(page.locator("#phase")).to_have_text("reads_switched", timeout=15_000)
        run = VerifyRun.objects.get(move=move)
        expect(page.locator("#verify-runs")).to_contain_text(f"{run.rows_checked:,}", timeout=15_000)

        shardmove("switch-writes", str(move.id))
        expect(page.locator("#phase")).to_have_text("writes_switched", timeout=15_000)
        event = MoveEvent.objects.filter(move=move, kind="cut-over").exclude(data={}).get()
        freeze_ms = round(event.data["freeze"] * 1000, 1)
        expect(page.locator("#freezes .freeze-ms")).to_have_text(f"{freeze_ms} ms", timeout=15_000)
        if os.environ.get("QQ_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["QQ_SCREENSHOTS"], "ops-move.png"), full_page=True)

        shardmove("complete", str(move.id))
        expect(page.locator("#phase")).to_have_text("complete", timeout=15_000)
        expect(page.locator("#no-next")).to_be_visible()
        expect(page.locator("#events")).to_contain_text("complete")
        live = page.locator("#live")
        expect(live).to_have_attribute("data-live", "0")  # polling stops once the move is over

        page.goto(f"{app_server.url}/ops/moves/")
        expect(page.locator("#moves")).to_contain_text("complete")
        page.goto(f"{app_server.url}/ops/")
        expect(page.locator("#ranges")).to_contain_text("shard3")
        if os.environ.get("QQ_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["QQ_SCREENSHOTS"], "ops-map.png"), full_page=True)
        connections.close_all()  # opened while Playwright's loop ran: Django's teardown would not see them
