"""The generation page: text arrives live in a real browser; without JavaScript the job still delivers."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape
from playwright.sync_api import expect

from apps.content.services import generation_create
from tests.browser import chromium
from tests.conftest import ALL_DATABASES, raw_rows
from tests.generation.conftest import PACED_MS, GenerationStack, completion_events, generation_row, wait_for_status

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)

# Records every state of the output and the status badge as the page changes them.
RECORD_CHANGES = """
window.__outputs = [];
window.__badges = [];
new MutationObserver(() => {
  const output = document.getElementById("output");
  const badge = document.getElementById("status");
  if (output && window.__outputs[window.__outputs.length - 1] !== output.textContent) {
    window.__outputs.push(output.textContent);
  }
  if (badge && window.__badges[window.__badges.length - 1] !== badge.textContent) {
    window.__badges.push(badge.textContent);
  }
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
"""


@pytest.mark.slow
def test_a_user_watches_the_text_arrive_in_steps_and_the_page_ends_succeeded(
    stack: GenerationStack, make_user: Any
) -> None:
    user = make_user(1060, "ivy", password="ivy's long passphrase")
    stack.server(token_interval_ms=PACED_MS)
    stack.worker()
    # The job waits 15 s, so the page's own stream generates the text while the user watches.
    app = stack.app_server(CONTENTGEN_PAGE_JOB_DELAY_SECONDS="15")

    with chromium() as browser:
        page = browser.new_page()
        page.add_init_script(RECORD_CHANGES)
        page.goto(app.url + "/accounts/login/")
        page.fill("#id_username", "ivy")
        page.fill("#id_password", "ivy's long passphrase")
        page.get_by_role("button", name="Log in").click()
        page.goto(app.url + "/generations/new/")
        page.fill("#id_prompt", "The socket module")
        page.locator("summary", has_text="Sampling settings").click()
        page.fill("#id_max_tokens", "40")
        page.get_by_role("button", name="Generate").click()

        expect(page.locator("#status")).to_have_text("Succeeded", timeout=30_000)
        final = page.locator("#output").text_content() or ""
        outputs = page.evaluate("window.__outputs")
        badges = page.evaluate("window.__badges")
        expect(page.locator("#usage")).to_contain_text("40 tokens")
        if os.environ.get("QQ_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["QQ_SCREENSHOTS"], "generation-live.png"), full_page=True)

    partial = [text for text in outputs if text and text != final and final.startswith(text)]
    assert len(set(partial)) >= 2, outputs  # the text grew in more than one step before it was complete
    assert "Running" in badges and badges[-1] == "Succeeded"
    generation_id = raw_rows("shard2", "SELECT id FROM content_generation WHERE user_id = %s", [user.id])[0][0]
    row = generation_row(user.id, generation_id)
    assert row["status"] == "succeeded" and row["output"] == final and row["completion_tokens"] == 40
    assert completion_events(user.id, generation_id) == 1


@pytest.mark.slow
def test_without_javascript_the_page_refreshes_until_the_background_job_has_the_result(
    stack: GenerationStack, make_user: Any, settings: Any
) -> None:
    settings.CONTENTGEN = {**settings.CONTENTGEN, "PAGE_JOB_DELAY_SECONDS": 0.5}
    user = make_user(61, "jo")
    stack.server()
    stack.worker()
    client = Client()
    client.force_login(user)

    created = client.post(
        "/generations/new/", {"prompt": "The socket module", "max_tokens": 30, "temperature": 0.8, "top_p": 0.95}
    )
    waiting_page = client.get(created["Location"]).content.decode()
    generation_id = int(created["Location"].rstrip("/").rsplit("/", 1)[1])
    row = wait_for_status(user.id, generation_id, "succeeded", "failed")
    done_page = client.get(created["Location"]).content.decode()

    assert '<noscript><meta http-equiv="refresh"' in waiting_page
    assert row["status"] == "succeeded"
    assert escape(row["output"]) in done_page and "Succeeded" in done_page
    assert 'http-equiv="refresh"' not in done_page and "EventSource" not in done_page


def test_the_page_says_why_a_generation_failed(make_user: Any) -> None:
    user = make_user(62, "kim")
    generation = generation_create(user_id=user.id, prompt="doomed", job_delay=None)
    raw_rows(
        "shard1",
        "UPDATE content_generation SET status = 'failed', error = %s WHERE id = %s RETURNING id",
        ["The generation service stayed at capacity; please try again later. (6 attempts)", generation.id],
    )
    client = Client()
    client.force_login(user)

    page = client.get(f"/generations/{generation.id}/").content.decode()

    assert "Failed" in page and "stayed at capacity; please try again later. (6 attempts)" in page
