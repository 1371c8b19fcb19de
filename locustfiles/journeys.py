"""What simulated people do: browse the pages, sign up, and use the JSON API.

Weights reflect today's traffic mix: most users are signed-in page users who
mostly read (list, open) and sometimes write (create, delete); a few new
visitors sign up; a smaller group of integrations use the API. Request names
start with their endpoint group (``page:``, ``auth:``, ``api:``, ``stream:``),
which is how thresholds.toml judges them.
"""

from __future__ import annotations

import json
import random
import re
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any

from locust import FastHttpUser, between, task

from .accounts import AccountPool, pool_for
from .auth import PageSession, api_token
from .options import LoadOptions
from .sse import watch_stream

if TYPE_CHECKING:
    from locust.env import Environment

PROMPTS = (
    "Write a short introduction to the socket module.",
    "Explain how a thread pool schedules its work.",
    "Describe the difference between a list and a tuple.",
    "Summarise what a context manager is for.",
    "Write a paragraph about reading files line by line.",
    "Explain why the default encoding matters.",
    "Describe how a dictionary finds a key.",
    "Write a note about closing network connections.",
)
_GENERATION_LINK = re.compile(r'href="/generations/(\d+)/"')
_CREATED = re.compile(r"/generations/(\d+)/$")
_STATUS_BADGE = re.compile(r'class="badge (\w+)" id="status"')


def account_pool(environment: Environment, options: LoadOptions) -> AccountPool:
    return pool_for(
        environment, prefix=options.account_prefix, count=options.account_count, password=options.account_password
    )


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def page_streams(html: str) -> bool:
    """Whether a browser would open the live stream: the page is still queued or running (its status badge)."""
    badge = _STATUS_BADGE.search(html)
    return badge is not None and badge.group(1) in ("queued", "running")


def _stream_path(generation_id: int | str) -> str:
    return f"/generations/{generation_id}/stream/"


class PageUser(FastHttpUser):
    """Shared by the page journeys: the options, a browser session and the generations seen so far."""

    abstract = True

    def on_start(self) -> None:
        self.options = LoadOptions.from_parsed(self.environment.parsed_options)
        self.session = PageSession(self.client)
        self.seen: deque[int] = deque(maxlen=40)
        self.mine: list[int] = []

    def get_page(self, path: str, name: str, *, may_be_gone: bool = False) -> str | None:
        """GET a signed-in page; a redirect (to the login form) means the session was lost.

        ``may_be_gone``: a 404 is a correct answer (another simulated user on the
        same account deleted that generation), not a failure.
        """
        with self.client.get(path, name=name, allow_redirects=False, catch_response=True) as page:
            if page.status_code == 404 and may_be_gone:
                page.success()
                return None
            if page.status_code == 302:
                page.failure(f"{name}: redirected to {page.headers.get('location')} (session lost)")
                self.session.username = None
                return None
            if page.status_code != 200:
                page.failure(f"{name}: HTTP {page.status_code}")
                return None
            html = page.text or ""
        self.session.remember_csrf(html)
        return html

    def create_from_form(self) -> int | None:
        """The page flow: open the form, post it (with its CSRF token), land on the new generation."""
        if self.get_page("/generations/new/", "page: new form") is None:
            return None
        form = {
            "prompt": random.choice(PROMPTS),
            "max_tokens": str(self.options.max_tokens),
            "temperature": "0.8",
            "top_p": "0.95",
            "seed": "",
            "stop": "",
        }
        match = _CREATED.search(self.session.post_form("/generations/new/", form, "page: create") or "")
        if not match:
            return None
        generation_id = int(match.group(1))
        self.mine.append(generation_id)
        self.open_and_watch(generation_id)
        return generation_id

    def open_and_watch(self, generation_id: int, *, may_be_gone: bool = False) -> None:
        """Open a generation's page; if the page streams it (queued/running), follow the stream as a browser would."""
        html = self.get_page(f"/generations/{generation_id}/", "page: detail", may_be_gone=may_be_gone)
        if html is None:
            self.forget(generation_id)
        elif _stream_path(generation_id) in html and page_streams(html):
            watch_stream(self.client, self.environment, _stream_path(generation_id), kind="page")

    def list_generations(self) -> None:
        html = self.get_page("/generations/", "page: list")
        if html:
            self.seen.clear()
            self.seen.extend(int(found) for found in _GENERATION_LINK.findall(html))

    def forget(self, generation_id: int) -> None:
        while generation_id in self.seen:
            self.seen.remove(generation_id)


class WebUser(PageUser):
    """A signed-in person on the pages, on a seeded account (every shard gets some)."""

    weight = 6
    wait_time = between(1, 4)

    def on_start(self) -> None:
        super().on_start()
        self.pool = account_pool(self.environment, self.options)
        self.session.login(self.pool.take())

    def signed_in(self) -> bool:
        return self.session.username is not None or self.session.login(self.pool.take())

    @task(10)
    def browse_list(self) -> None:
        if self.signed_in():
            self.list_generations()

    @task(8)
    def open_past_generation(self) -> None:
        if not self.signed_in():
            return
        if not self.seen:
            self.list_generations()
        if self.seen:
            self.open_and_watch(random.choice(self.seen), may_be_gone=True)

    @task(3)
    def create_generation(self) -> None:
        if self.signed_in():
            self.create_from_form()

    @task(1)
    def delete_own_generation(self) -> None:
        if not self.signed_in() or not self.mine:
            return
        generation_id = self.mine.pop(0)
        if self.get_page(f"/generations/{generation_id}/delete/", "page: delete confirm") is None:
            return
        self.session.post_form(f"/generations/{generation_id}/delete/", {}, "page: delete")
        self.forget(generation_id)

    @task(1)
    def log_out_and_back_in(self) -> None:
        """Log out, then in again on the next account of the pool (so users wander across shards)."""
        if self.session.username:
            self.session.logout()
        self.seen.clear()
        self.mine.clear()
        self.session.login(self.pool.take())


class NewVisitor(PageUser):
    """Someone new: signs up (a new user lands in the newest range), tries one generation, leaves."""

    weight = 1
    wait_time = between(5, 15)

    @task
    def sign_up_and_try_it(self) -> None:
        self.client.get("/", name="page: home")
        username = f"visitor-{secrets.token_hex(6)}"
        if not self.session.signup(username, f"qq-{secrets.token_urlsafe(12)}"):
            return
        self.list_generations()
        self.create_from_form()
        self.session.logout()
        self.seen.clear()
        self.mine.clear()


class ApiUser(FastHttpUser):
    """An integration using the JSON API with a token: creates, streams, lists, reads and deletes."""

    weight = 2
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.options = LoadOptions.from_parsed(self.environment.parsed_options)
        self.pool = account_pool(self.environment, self.options)
        self.headers: dict[str, str] | None = None
        self.seen: deque[str] = deque(maxlen=40)
        self.mine: list[str] = []

    def authorised(self) -> bool:
        if self.headers is None:
            token = api_token(self.client, self.pool.take())
            self.headers = {"Authorization": f"Token {token}"} if token else None
        return self.headers is not None

    @task(4)
    def list_generations(self) -> None:
        if not self.authorised():
            return
        with self.client.get(
            "/api/v1/generations/?page=1", name="api: list", headers=self.headers, catch_response=True
        ) as response:
            results = _json(response.text).get("results") if response.status_code == 200 else None
            if not isinstance(results, list):
                response.failure(f"list: HTTP {response.status_code}, expected a page of results")
                return
            self.seen.clear()
            self.seen.extend(str(item["id"]) for item in results if isinstance(item, dict) and "id" in item)

    @task(3)
    def read_generation(self) -> None:
        if not self.authorised():
            return
        if not self.seen:
            self.list_generations()
        if self.seen:
            generation_id = random.choice(self.seen)
            with self.client.get(
                f"/api/v1/generations/{generation_id}/", name="api: detail", headers=self.headers, catch_response=True
            ) as response:
                if response.status_code == 404:
                    # Another simulated user on the same account deleted it: a correct answer.
                    response.success()
                    self.seen.remove(generation_id)

    @task(3)
    def create_and_stream(self) -> None:
        if not self.authorised():
            return
        body = {"prompt": random.choice(PROMPTS), "max_tokens": self.options.max_tokens, "temperature": 0.8}
        with self.client.post(
            "/api/v1/generations/", json=body, name="api: create", headers=self.headers, catch_response=True
        ) as response:
            created = _json(response.text) if response.status_code == 201 else {}
            if "id" not in created:
                response.failure(f"create: HTTP {response.status_code} {(response.text or '')[:200]}")
                return
        generation_id = str(created["id"])
        self.mine.append(generation_id)
        stream_url = created.get("stream_url") or f"/api/v1/generations/{generation_id}/stream/"
        watch_stream(self.client, self.environment, stream_url, kind="api", headers=self.headers)

    @task(1)
    def delete_own_generation(self) -> None:
        if not self.authorised() or not self.mine:
            return
        generation_id = self.mine.pop(0)
        with self.client.delete(
            f"/api/v1/generations/{generation_id}/", name="api: delete", headers=self.headers, catch_response=True
        ) as response:
            if response.status_code != 204:
                response.failure(f"delete: HTTP {response.status_code}")
