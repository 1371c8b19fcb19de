"""Signing in the way a browser and an API client do: Django's CSRF form token, session cookie, API token."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from .accounts import Account

if TYPE_CHECKING:
    from locust.contrib.fasthttp import FastHttpSession

_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')
LOGIN_URL = "/accounts/login/"
LOGOUT_URL = "/accounts/logout/"
SIGNUP_URL = "/accounts/signup/"
TOKEN_URL = "/api/v1/auth/token/"
SEED_HINT = "are the load users seeded? run `manage.py seed_load_users`"


def csrf_token_in(html: str | None) -> str | None:
    """The CSRF token of the first form on a Django page, or None when the page has no form."""
    match = _CSRF_FIELD.search(html or "")
    return match.group(1) if match else None


class PageSession:
    """A browser's sign-in state: the CSRF token of the last page seen and who is logged in."""

    def __init__(self, client: FastHttpSession) -> None:
        self.client = client
        self.csrf: str | None = None
        self.username: str | None = None

    def remember_csrf(self, html: str | None) -> None:
        token = csrf_token_in(html)
        if token:
            self.csrf = token

    def post_form(self, path: str, fields: dict[str, str], name: str, refused: str = "") -> str | None:
        """POST a form with the page's CSRF token, expecting a redirect: its Location, or None (a failure)."""
        with self.client.post(
            path,
            data={**fields, "csrfmiddlewaretoken": self.csrf or ""},
            name=name,
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code == 302:
                return str(response.headers.get("location") or "")
            response.failure(f"{name}: HTTP {response.status_code}, expected a redirect{refused}")
            return None

    def login(self, account: Account) -> bool:
        with self.client.get(LOGIN_URL, name="auth: login form", catch_response=True) as page:
            self.remember_csrf(page.text)
            if page.status_code != 200 or not self.csrf:
                page.failure(f"login form: HTTP {page.status_code}, CSRF token {'found' if self.csrf else 'missing'}")
                return False
        fields = {"username": account.username, "password": account.password}
        if self.post_form(LOGIN_URL, fields, "auth: login", f" (login as {account.username}; {SEED_HINT})") is None:
            return False
        self.username = account.username
        # Django rotates the CSRF token at login: the next page we read supplies the new one.
        self.csrf = None
        return True

    def logout(self) -> None:
        if not self.csrf:
            self.remember_csrf(self.client.get("/generations/", name="page: list").text)
        self.post_form(LOGOUT_URL, {}, "auth: logout")
        self.username = None
        self.csrf = None
        self.client.cookiejar.clear()

    def signup(self, username: str, password: str) -> bool:
        self.remember_csrf(self.client.get(SIGNUP_URL, name="auth: signup form").text)
        fields = {"username": username, "password1": password, "password2": password}
        if self.post_form(SIGNUP_URL, fields, "auth: signup") is None:
            return False
        self.username = username
        self.csrf = None
        return True


def api_token(client: FastHttpSession, account: Account) -> str | None:
    """``POST /api/v1/auth/token/`` with the account's password: the token an API client keeps using."""
    with client.post(
        TOKEN_URL,
        json={"username": account.username, "password": account.password},
        name="auth: api token",
        catch_response=True,
    ) as response:
        token = _json_field(response.text, "token") if response.status_code == 200 else None
        if not token:
            response.failure(f"no token for {account.username} (HTTP {response.status_code}); {SEED_HINT}")
        return token


def _json_field(text: str | None, name: str) -> str | None:
    try:
        value = json.loads(text or "")
    except ValueError:
        return None
    found = value.get(name) if isinstance(value, dict) else None
    return str(found) if found else None
