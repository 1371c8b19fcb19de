"""Static files on S3: hashed names cached for a year, unhashed ones briefly, and a deploy uploads only changes.

collectstatic runs as a deploy runs it: a separate process configured by the
environment (QQ_STORAGE=s3, buckets, endpoint), talking HTTP to the test S3
server. The buckets are versioned, so every PUT shows up as an object version.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import override_settings

from apps.storage.backends import IMMUTABLE

from .conftest import CDN_DOMAIN, REPO_ROOT, Buckets, S3Server, object_versions, s3_settings

pytestmark = pytest.mark.slow

LOGO_PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + b"\x00" * 16
SITE_CSS = 'body { background: url("../img/logo.png") no-repeat; }\n'


@pytest.fixture
def static_source(tmp_path: Path) -> Path:
    source = tmp_path / "static"
    (source / "css").mkdir(parents=True)
    (source / "img").mkdir()
    (source / "js").mkdir()
    (source / "css" / "site.css").write_text(SITE_CSS)
    (source / "img" / "logo.png").write_bytes(LOGO_PNG)
    (source / "js" / "app.js").write_text("console.log('quill');\n")
    (source / "robots.txt").write_text("User-agent: *\nDisallow: /generations/\n")
    return source


def run_collectstatic(server: S3Server, buckets: Buckets, source: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **server.aws_env(),
        **buckets.env(),
        "QQ_CDN_DOMAIN": CDN_DOMAIN,
        "QQ_TEST_STATIC_DIR": str(source),
        "DJANGO_SETTINGS_MODULE": "tests.storage.static_settings",
    }
    return subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def collectstatic(server: S3Server, buckets: Buckets, source: Path) -> str:
    result = run_collectstatic(server, buckets, source)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def static_keys(server: S3Server, bucket: str) -> dict[str, dict[str, str]]:
    client = server.client()
    keys: dict[str, dict[str, str]] = {}
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        head = client.head_object(Bucket=bucket, Key=item["Key"])
        keys[item["Key"]] = {"CacheControl": head.get("CacheControl", ""), "ContentType": head["ContentType"]}
    return keys


# "<root>.<12 hex digits><ext>": the name Django's manifest storage gives the copy of "<root><ext>".
HASHED_COPY = re.compile(r"^(.+)\.[0-9a-f]{12}(\.[^./]+)?$")


def hashed_key(keys: dict[str, object], original: str) -> str:
    root, ext = original.rsplit(".", 1)
    pattern = re.compile(rf"^{re.escape(root)}\.[0-9a-f]{{12}}\.{ext}$")
    matches = [key for key in keys if pattern.match(key)]
    assert len(matches) == 1, (original, sorted(keys))
    return matches[0]


def test_collectstatic_uploads_hashed_files_cached_for_a_year_and_unhashed_ones_briefly(
    s3_server: S3Server, buckets: Buckets, static_source: Path
) -> None:
    collectstatic(s3_server, buckets, static_source)
    keys = static_keys(s3_server, buckets.static)

    expected_types = {"css": "text/css", "png": "image/png", "js": "text/javascript", "txt": "text/plain"}
    for original in ("static/css/site.css", "static/img/logo.png", "static/js/app.js", "static/robots.txt"):
        hashed = hashed_key(keys, original)
        extension = original.rsplit(".", 1)[1]
        assert keys[hashed] == {"CacheControl": IMMUTABLE, "ContentType": expected_types[extension]}
        # The original keeps its name across deploys, so the CDN may only keep it for minutes.
        assert keys[original] == {"CacheControl": "public, max-age=300", "ContentType": expected_types[extension]}
    assert keys["static/staticfiles.json"]["CacheControl"] == "no-cache"
    # Every object, third-party static included, is either a hashed copy (cached for a year) or an original.
    # A hashed copy is told by its original standing next to it, not by the backend's own name test.
    for key, meta in keys.items():
        if key != "static/staticfiles.json":
            copy_of = HASHED_COPY.match(key)
            expected = IMMUTABLE if copy_of and "".join(copy_of.groups("")) in keys else "public, max-age=300"
            assert meta["CacheControl"] == expected, key

    # The stored CSS points at the logo's hashed name, so the pair is cached (and replaced) together.
    css = s3_server.client().get_object(Bucket=buckets.static, Key=hashed_key(keys, "static/css/site.css"))
    logo_name = hashed_key(keys, "static/img/logo.png").rsplit("/", 1)[1]
    assert f'url("../img/{logo_name}")' in css["Body"].read().decode()


def test_pages_link_static_files_by_hashed_name_on_the_cdn_domain(
    s3_server: S3Server, buckets: Buckets, static_source: Path
) -> None:
    collectstatic(s3_server, buckets, static_source)
    hashed = hashed_key(static_keys(s3_server, buckets.static), "static/css/site.css")
    with override_settings(**s3_settings(s3_server, buckets)):
        from django.templatetags.static import static

        assert static("css/site.css") == f"https://{CDN_DOMAIN}/{hashed}"


def test_a_second_collectstatic_uploads_nothing(s3_server: S3Server, buckets: Buckets, static_source: Path) -> None:
    collectstatic(s3_server, buckets, static_source)
    before = object_versions(s3_server, buckets.static)

    output = collectstatic(s3_server, buckets, static_source)

    assert object_versions(s3_server, buckets.static) == before
    assert "0 uploaded" in output


def test_a_fresh_checkout_with_newer_file_times_uploads_nothing(
    s3_server: S3Server, buckets: Buckets, static_source: Path
) -> None:
    collectstatic(s3_server, buckets, static_source)
    before = object_versions(s3_server, buckets.static)
    later = time.time() + 3600
    for path in static_source.rglob("*"):
        os.utime(path, (later, later))

    collectstatic(s3_server, buckets, static_source)

    assert object_versions(s3_server, buckets.static) == before


def test_after_one_file_changes_only_it_its_new_hashed_copy_and_the_manifest_are_uploaded(
    s3_server: S3Server, buckets: Buckets, static_source: Path
) -> None:
    collectstatic(s3_server, buckets, static_source)
    before = object_versions(s3_server, buckets.static)
    (static_source / "js" / "app.js").write_text("console.log('quill, revised');\n")

    collectstatic(s3_server, buckets, static_source)

    after = object_versions(s3_server, buckets.static)
    written = {key: count - before.get(key, 0) for key, count in after.items() if count != before.get(key, 0)}
    new_hashed = [key for key in written if key not in before]
    assert len(new_hashed) == 1 and re.match(r"^static/js/app\.[0-9a-f]{12}\.js$", new_hashed[0])
    assert written == {"static/js/app.js": 1, new_hashed[0]: 1, "static/staticfiles.json": 1}
    # The previous hashed file stays: pages rendered by servers not yet redeployed still point at it.
    assert hashed_key(before, "static/js/app.js") in after


def test_a_bucket_that_does_not_exist_fails_collectstatic_with_an_error_naming_it(
    s3_server: S3Server, static_source: Path
) -> None:
    missing = Buckets(static="qq-static-never-created", media="qq-media-never-created")
    result = run_collectstatic(s3_server, missing, static_source)
    assert result.returncode == 1
    output = result.stderr
    assert "CommandError: The static files storage (bucket 'qq-static-never-created') refused the upload" in output
    assert "NoSuchBucket" in output and "Traceback" not in output
