"""``manage.py cdn_invalidate``: well-formed CloudFront invalidations, waiting with progress, clear failures.

CloudFront has no local server of its own: botocore's Stubber checks the exact
requests the command sends and plays CloudFront's answers; one test also runs
the command as a process against the test server's CloudFront over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from django.core.management import CommandError, call_command
from django.test import override_settings

from apps.storage.management.commands import cdn_invalidate

from .conftest import REPO_ROOT, S3Server

DISTRIBUTION = "E2QWRUHAPOMQZL"


@pytest.fixture
def cloudfront(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client("cloudfront", region_name="us-east-1")
    monkeypatch.setattr(cdn_invalidate, "cloudfront_client", lambda: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def invalidation(status: str, paths: list[str], invalidation_id: str = "I2J0I21PCUYOIK") -> dict[str, Any]:
    return {
        "Invalidation": {
            "Id": invalidation_id,
            "Status": status,
            "CreateTime": datetime(2026, 1, 1, tzinfo=UTC),
            "InvalidationBatch": {"Paths": {"Quantity": len(paths), "Items": paths}, "CallerReference": "ref"},
        }
    }


def expect_create(stubber: Stubber, paths: list[str], status: str = "InProgress") -> None:
    stubber.add_response(
        "create_invalidation",
        {**invalidation(status, paths), "Location": "https://cloudfront.amazonaws.com/x"},
        {
            "DistributionId": DISTRIBUTION,
            "InvalidationBatch": {"Paths": {"Quantity": len(paths), "Items": paths}, "CallerReference": ANY},
        },
    )


def expect_status(stubber: Stubber, status: str, paths: list[str]) -> None:
    stubber.add_response(
        "get_invalidation", invalidation(status, paths), {"DistributionId": DISTRIBUTION, "Id": "I2J0I21PCUYOIK"}
    )


def run(*args: str) -> str:
    out = StringIO()
    with override_settings(QQ_CLOUDFRONT_DISTRIBUTION_ID=DISTRIBUTION):
        call_command("cdn_invalidate", *args, stdout=out)
    return out.getvalue()


def test_it_sends_one_well_formed_invalidation_for_the_paths_given_without_duplicates(cloudfront: Stubber) -> None:
    expect_create(cloudfront, ["/static/robots.txt", "/static/img/*"])
    output = run("/static/robots.txt", "/static/img/*", "/static/robots.txt")
    assert f"Invalidation I2J0I21PCUYOIK requested on {DISTRIBUTION} for 2 path(s): InProgress." in output
    assert "--wait" in output


def test_with_wait_it_reports_progress_until_cloudfront_says_completed(cloudfront: Stubber) -> None:
    paths = ["/static/robots.txt"]
    expect_create(cloudfront, paths)
    expect_status(cloudfront, "InProgress", paths)
    expect_status(cloudfront, "Completed", paths)
    output = run(*paths, "--wait", "--poll-interval", "0")
    lines = output.splitlines()
    assert [line.split("] ")[1].split(" (")[0] for line in lines if line.startswith("  [")] == [
        "I2J0I21PCUYOIK: InProgress",
        "I2J0I21PCUYOIK: Completed",
    ]
    assert lines[-1] == "Invalidation I2J0I21PCUYOIK completed: 1 path(s) fresh on every edge."


def test_waiting_gives_up_with_an_error_after_the_timeout(cloudfront: Stubber) -> None:
    paths = ["/static/robots.txt"]
    expect_create(cloudfront, paths)
    expect_status(cloudfront, "InProgress", paths)
    with pytest.raises(CommandError, match=r"still InProgress after .*aws cloudfront get-invalidation"):
        run(*paths, "--wait", "--poll-interval", "0.05", "--timeout", "0.05")


def test_a_dry_run_sends_nothing(cloudfront: Stubber) -> None:
    output = run("/static/robots.txt", "--dry-run")
    assert output == f"Dry run: would invalidate 1 path(s) on {DISTRIBUTION}: /static/robots.txt\n"


def test_invalidating_a_hashed_name_warns_that_it_never_goes_stale(cloudfront: Stubber) -> None:
    output = run("/static/css/app.0123456789ab.css", "--dry-run")
    assert "/static/css/app.0123456789ab.css is content-hashed" in output


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["static/robots.txt"], "must start with '/', for example /static/robots.txt"),
        (["/static/*/app.css"], "'*' before its end"),
        (["/static/my file.txt"], "percent-encode"),
        ([f"/static/{n}/*" for n in range(16)], "16 wildcard paths"),
    ],
)
def test_malformed_paths_are_refused_before_anything_is_sent(
    cloudfront: Stubber, paths: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        run(*paths)


def test_without_a_distribution_it_says_which_setting_to_set(cloudfront: Stubber) -> None:
    with (
        override_settings(QQ_CLOUDFRONT_DISTRIBUTION_ID=""),
        pytest.raises(CommandError, match="set QQ_CLOUDFRONT_DISTRIBUTION_ID or pass --distribution-id"),
    ):
        call_command("cdn_invalidate", "/static/robots.txt", stdout=StringIO())


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("NoSuchDistribution", f"distribution '{DISTRIBUTION}' does not exist"),
        ("AccessDenied", "need cloudfront:CreateInvalidation"),
        ("TooManyInvalidationsInProgress", "wait for them to finish"),
    ],
)
def test_cloudfront_refusals_become_errors_that_say_what_to_fix(cloudfront: Stubber, code: str, message: str) -> None:
    cloudfront.add_client_error("create_invalidation", service_error_code=code, http_status_code=400)
    with pytest.raises(CommandError, match=message):
        run("/static/robots.txt")


@pytest.mark.slow
def test_against_a_cloudfront_over_http_the_command_creates_the_invalidation_and_waits(s3_server: S3Server) -> None:
    client = s3_server.client("cloudfront")
    origin = {
        "Id": "static",
        "DomainName": "qq-static.s3.amazonaws.com",
        "S3OriginConfig": {"OriginAccessIdentity": ""},
    }
    distribution = client.create_distribution(
        DistributionConfig={
            "CallerReference": "storage-tests",
            "Comment": "",
            "Enabled": True,
            "Origins": {"Quantity": 1, "Items": [origin]},
            "DefaultCacheBehavior": {
                "TargetOriginId": "static",
                "ViewerProtocolPolicy": "redirect-to-https",
                "MinTTL": 0,
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                "TrustedSigners": {"Enabled": False, "Quantity": 0},
            },
        }
    )["Distribution"]["Id"]
    env = {**os.environ, **s3_server.aws_env(), "QQ_CLOUDFRONT_DISTRIBUTION_ID": distribution}

    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "cdn_invalidate",
            "/static/robots.txt",
            "/exports/*",
            "--wait",
            "--poll-interval",
            "0.1",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "completed: 2 path(s) fresh on every edge" in result.stdout
    [summary] = client.list_invalidations(DistributionId=distribution)["InvalidationList"]["Items"]
    batch = client.get_invalidation(DistributionId=distribution, Id=summary["Id"])["Invalidation"]["InvalidationBatch"]
    assert batch["Paths"] == {"Quantity": 2, "Items": ["/static/robots.txt", "/exports/*"]}
    assert batch["CallerReference"].startswith("qq-")
