"""A person in a real browser: sign up, write a prompt, find it, open it, delete it."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from tests.browser import chromium
from tests.conftest import ALL_DATABASES, raw_rows
from tests.web.conftest import AppServer

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]


def test_a_new_user_can_sign_up_create_open_and_delete_a_generation(app_server: AppServer) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.goto(app_server.url + "/")
        page.get_by_role("link", name="Create a free account").click()
        page.fill("#id_username", "browser-user")
        page.fill("#id_password1", "a-very-long-passphrase-7")
        page.fill("#id_password2", "a-very-long-passphrase-7")
        page.get_by_role("button", name="Sign up").click()
        expect(page.get_by_role("heading", name="My generations")).to_be_visible()

        page.get_by_role("link", name="Write your first prompt").click()
        page.fill("#id_prompt", "A limerick about range-based sharding")
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#status")).to_have_text("Queued")
        expect(page.locator(".messages")).to_contain_text("Generation created")
        if os.environ.get("QQ_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["QQ_SCREENSHOTS"], "detail.png"), full_page=True)

        page.get_by_role("link", name="My generations").click()
        row = page.get_by_role("link", name="A limerick about range-based sharding")
        expect(row).to_be_visible()
        if os.environ.get("QQ_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["QQ_SCREENSHOTS"], "list.png"), full_page=True)
        row.click()
        page.get_by_role("link", name="Delete").click()
        page.get_by_role("button", name="Delete").click()
        expect(page).to_have_url(re.compile(r"/generations/$"))
        expect(page.get_by_text("Generation deleted.")).to_be_visible()

    # New sign-ups take the next ID from the control database, which the standard test map puts on shard1.
    user_id = raw_rows("default", "SELECT id FROM auth_user WHERE username = 'browser-user'")[0][0]
    alias = "shard1" if user_id < 1000 else "shard2"
    assert raw_rows(alias, "SELECT count(*) FROM content_generation WHERE user_id = %s", [user_id]) == [(0,)]
