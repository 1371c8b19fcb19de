"""Every page in a real browser at phone (360 px) and desktop (1280 px) width: nothing off-screen, and
axe-core finds no serious or critical accessibility violation."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from apps.content.models import Generation
from apps.content.services import generation_create
from quantumquill.devstack.stack import REPO_ROOT
from tests.browser import chromium
from tests.conftest import ALL_DATABASES
from tests.web.conftest import AppServer, start_app_server

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

AXE_VERSION = "4.14.1"
AXE_DIR = REPO_ROOT / "var" / "axe-core"
PASSWORD = "rosa's long passphrase"
WIDTHS = (360, 1280)


@pytest.fixture(autouse=True)
def fast_password_hashing() -> None:
    """The app server in its own process checks passwords with the default hashers: hash the real way here."""


@pytest.fixture(scope="session")
def axe_script() -> str:
    """axe-core's browser bundle, fetched once with npm (pinned) into var/."""
    script = AXE_DIR / AXE_VERSION / "axe.min.js"
    if not script.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to fetch axe-core; run scripts/system-deps.sh (make test does).")
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        packed = (
            subprocess.run(
                [npm, "pack", f"axe-core@{AXE_VERSION}", "--silent"],
                cwd=AXE_DIR,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        with tarfile.open(AXE_DIR / packed) as archive:
            member = archive.getmember("package/axe.min.js")
            extracted = archive.extractfile(member)
            assert extracted is not None
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_bytes(extracted.read())
    return script.read_text()


@pytest.fixture
def production_like_server() -> Iterator[AppServer]:
    # DEBUG off, so the error pages are ours; plain HTTP on loopback (no proxy in front here).
    server = start_app_server(DJANGO_DEBUG="0", QQ_HTTPS="0", QQ_TRUST_PROXY_HEADERS="0", QQ_HORIZONTAL="0")
    yield server
    server.process.terminate()
    server.process.wait(15)


def serious_violations(page: Page, axe: str) -> list[dict[str, Any]]:
    page.add_script_tag(content=axe)
    result = page.evaluate("async () => JSON.stringify((await axe.run(document)).violations)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in json.loads(result)
        if v["impact"] in ("serious", "critical")
    ]


def fits_the_width(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_every_page_fits_phones_and_desktops_and_passes_axe(
    production_like_server: AppServer, axe_script: str, make_user: Any
) -> None:
    user = make_user(1090, "rosa-with-a-long-username", password=PASSWORD)
    generation = generation_create(user_id=user.pk, prompt="An owl at dusk, in four lines", job_delay=None)
    Generation.objects.for_user(user.pk).filter(id=generation.id).update(
        status=Generation.Status.SUCCEEDED, output="The owl looks on.", completion_tokens=5
    )
    base = production_like_server.url
    anonymous = ["/", "/accounts/login/", "/accounts/signup/", "/no/such/page/"]
    signed_in = [
        "/generations/",
        f"/generations/{generation.id}/",
        "/generations/new/",
        "/accounts/account/",
        "/no/such/page/",
    ]
    problems: dict[str, Any] = {}
    with chromium() as browser:
        for width in WIDTHS:
            context = browser.new_context(viewport={"width": width, "height": 800})
            page = context.new_page()
            for path in anonymous:
                page.goto(base + path)
                if not fits_the_width(page):
                    problems[f"{width} {path} anonymous"] = "wider than the screen"
                if found := serious_violations(page, axe_script):
                    problems[f"{width} {path} anonymous axe"] = found
            page.goto(base + "/accounts/login/")
            page.fill("#id_username", user.username)
            page.fill("#id_password", PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("heading", name="My generations")).to_be_visible()
            for path in signed_in:
                page.goto(base + path)
                logout = page.get_by_role("button", name="Log out")
                box = logout.bounding_box()
                if box is None or box["x"] < 0 or box["x"] + box["width"] > width:
                    problems[f"{width} {path} logout"] = f"Log out is off-screen: {box}"
                if not fits_the_width(page):
                    problems[f"{width} {path}"] = "wider than the screen"
                if found := serious_violations(page, axe_script):
                    problems[f"{width} {path} axe"] = found
            context.close()
    assert problems == {}
