"""The staff analytics page: charts from the warehouse, drawn in a real browser; clear answers otherwise."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from PIL import Image
from playwright.sync_api import expect

from apps.analytics.charts import PALETTE
from apps.analytics.conf import WarehouseConfig
from apps.analytics.sync import Syncer
from tests.analytics.conftest import SINCE_TEXT, UNTIL_TEXT, seed_content
from tests.browser import chromium
from tests.conftest import ALL_DATABASES
from tests.moves.support import QUICK_SETTINGS
from tests.web.conftest import start_app_server

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)

WINDOW = f"?since={SINCE_TEXT}&until={UNTIL_TEXT}"
PASSWORD = "a long staff passphrase"


def use_warehouse(settings: Any, config: WarehouseConfig) -> None:
    settings.WAREHOUSE = {"URL": config.url, "DUCKDB_PATH": config.duckdb_path}


def rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


@pytest.mark.slow
def test_a_staff_member_sees_every_chart_drawn_from_the_warehouse(
    duckdb_warehouse: WarehouseConfig, make_user: Any
) -> None:
    staff = make_user(30, "ada", password=PASSWORD)
    staff.is_staff = True
    staff.save()
    make_user(1030, "bob")
    rng = random.Random(11)
    seed_content("shard1", [30], 40, rng=rng)
    seed_content("shard2", [1030], 40, rng=rng)
    Syncer(duckdb_warehouse).catch_up()
    # With the test process' password hashers (tests.moves.settings): the browser logs in with a password hashed here.
    app = start_app_server(
        WAREHOUSE_DUCKDB_PATH=str(duckdb_warehouse.duckdb_path), DJANGO_SETTINGS_MODULE=QUICK_SETTINGS
    )
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(app.url + "/accounts/login/?next=/analytics/" + WINDOW.replace("&", "%26"))
            page.fill("#id_username", "ada")
            page.fill("#id_password", PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("heading", name="Analytics", exact=True)).to_be_visible()
            charts = page.locator("svg.chart")
            expect(charts).to_have_count(6)
            assert page.locator("svg.chart polyline.series").count() >= 8
            assert page.locator("svg.chart rect.bar").count() == 2  # ada and bob
            expect(page.locator("table.table")).to_contain_text("bob")
            png = charts.first.screenshot()
            if os.environ.get("QQ_SCREENSHOTS"):
                page.screenshot(path=str(Path(os.environ["QQ_SCREENSHOTS"]) / "analytics.png"), full_page=True)
    finally:
        app.process.terminate()
        app.process.wait(15)

    # The screenshot shows drawn lines, not an empty frame: pixels of the series' colours are there.
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size[0] >= 700 and image.size[1] >= 200
    colours = image.getcolors(maxcolors=1 << 20) or []
    drawn = {c for _, c in colours}
    assert any(max(abs(a - b) for a, b in zip(c, rgb(PALETTE[0]), strict=False)) < 40 for c in drawn), "no series drawn"
    assert len(drawn) > 20


def test_only_staff_get_the_page(
    client: Client, make_user: Any, duckdb_warehouse: WarehouseConfig, settings: Any
) -> None:
    use_warehouse(settings, duckdb_warehouse)
    assert client.get("/analytics/").status_code == 302  # to the login page
    client.force_login(make_user(40))
    response = client.get("/analytics/")
    assert response.status_code == 403 and b"Staff only" in response.content


def test_a_missing_warehouse_gives_a_503_that_says_how_to_create_it(
    client: Client, make_user: Any, duckdb_warehouse: WarehouseConfig, settings: Any
) -> None:
    use_warehouse(settings, duckdb_warehouse)  # never synced: the file does not exist
    staff = make_user(41)
    staff.is_staff = True
    staff.save()
    client.force_login(staff)
    response = client.get("/analytics/")
    assert response.status_code == 503 and response["Retry-After"] == "30"
    assert b"warehouse sync" in response.content


def test_a_bad_date_gives_a_400_that_names_the_expected_form(
    client: Client, make_user: Any, duckdb_warehouse: WarehouseConfig, settings: Any
) -> None:
    use_warehouse(settings, duckdb_warehouse)
    staff = make_user(42)
    staff.is_staff = True
    staff.save()
    client.force_login(staff)
    response = client.get("/analytics/?since=yesterday")
    assert response.status_code == 400 and b"YYYY-MM-DD" in response.content
    response = client.get("/analytics/?since=2026-12-01&until=2026-11-01")
    assert response.status_code == 400 and b"is after" in response.content
