"""The service-level check: what passes, what fails, and what is not judged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from locustfiles.options import DEFAULT_THRESHOLDS
from locustfiles.thresholds import EndpointStats, Thresholds, ThresholdsError, evaluate, load_thresholds, percentile
from tests.loadtest.conftest import REPO


def entry(name: str, times: dict[int, int], failures: int = 0) -> EndpointStats:
    return EndpointStats(name, "GET", sum(times.values()), failures, times)


@pytest.fixture
def thresholds(tmp_path: Path) -> Thresholds:
    path = tmp_path / "t.toml"
    path.write_text(
        """
[gate]
max_failure_ratio = 0.01
min_requests = 100
min_group_requests = 20
max_exceptions = 0

[groups.pages]
prefixes = ["page: "]
p95_ms = 200
required = true

[groups.grpc]
prefixes = ["grpc: "]
p95_ms = 100
max_failure_ratio = 0.05
"""
    )
    return load_thresholds(path)


def failed(verdict) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{c.subject}: {c.measured}" for c in verdict.failed_checks]


def test_a_run_within_every_limit_passes(thresholds: Thresholds) -> None:
    verdict = evaluate([entry("page: list", {20: 150}), entry("grpc: Generate", {15: 50})], thresholds)
    assert verdict.passed, failed(verdict)
    assert verdict.totals["requests"] == 200


def test_a_group_over_its_p95_fails_the_run_and_names_the_group(thresholds: Thresholds) -> None:
    slow = entry("page: detail", {50: 80, 900: 20})  # with the list below: p95 = 900 ms
    verdict = evaluate([slow, entry("page: list", {20: 100})], thresholds)
    assert not verdict.passed
    assert failed(verdict) == ["pages: p95 900 ms"]


def test_a_failure_ratio_over_the_limit_fails_the_run(thresholds: Thresholds) -> None:
    verdict = evaluate([entry("page: list", {20: 200}, failures=3)], thresholds)
    assert failed(verdict) == ["all requests: failure ratio 1.50% (3/200)"]


def test_a_group_failure_limit_is_checked_on_the_groups_own_requests(thresholds: Thresholds) -> None:
    verdict = evaluate([entry("page: list", {20: 1000}), entry("grpc: Generate", {10: 40}, failures=4)], thresholds)
    assert failed(verdict) == ["grpc: failure ratio 10.00% (4/40)"]


def test_a_group_with_too_few_requests_is_not_judged(thresholds: Thresholds) -> None:
    verdict = evaluate([entry("page: list", {20: 150}), entry("grpc: Generate", {5000: 5})], thresholds)
    assert verdict.passed
    grpc = [c for c in verdict.checks if c.subject == "grpc"]
    assert [(c.passed, c.note) for c in grpc] == [(None, "too few requests to judge")]


def test_a_required_group_without_traffic_fails_a_finished_run_but_not_a_window(thresholds: Thresholds) -> None:
    only_grpc = [entry("grpc: Generate", {10: 150})]
    assert failed(evaluate(only_grpc, thresholds)) == ["pages: 0 requests"]
    assert evaluate(only_grpc, thresholds, mode="window").passed


def test_a_run_too_short_to_prove_anything_fails_but_a_live_run_is_not_judged_yet(thresholds: Thresholds) -> None:
    short = [entry("page: list", {20: 50})]
    assert failed(evaluate(short, thresholds)) == ["run length: 50 requests"]
    live = evaluate(short, thresholds, mode="live")
    assert live.passed
    assert [c.note for c in live.checks if c.subject == "run length"] == ["judged when the run ends"]


def test_errors_in_the_load_scripts_fail_the_run(thresholds: Thresholds) -> None:
    verdict = evaluate([entry("page: list", {20: 150})], thresholds, exceptions=2)
    assert failed(verdict) == ["errors in the load scripts: 2"]


def test_percentile_reads_locusts_bucketed_response_times() -> None:
    assert percentile({10: 95, 20: 4, 3000: 1}, 0.95) == 10
    assert percentile({10: 94, 20: 5, 3000: 1}, 0.95) == 20
    assert percentile({}, 0.95) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gate\n", "is not valid TOML"),
        ("[groups.x]\nprefixes = ['a']\n", "a [gate] table is required"),
        ("[gate]\nmax_failure_ratio = 'low'\n", "[gate]: max_failure_ratio must be a non-negative number, got 'low'"),
        ("[gate]\n[groups.pages]\nprefixes = []\n", "[groups.pages]: prefixes must be a non-empty list"),
        (
            "[gate]\n[groups.pages]\nprefixes = ['page: ']\np95_ms = -1\n",
            "[groups.pages]: p95_ms must be a non-negative",
        ),
    ],
)
def test_a_malformed_thresholds_file_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ThresholdsError) as caught:
        load_thresholds(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_missing_thresholds_file_is_named() -> None:
    with pytest.raises(ThresholdsError, match=r"thresholds file /nonexistent\.toml does not exist"):
        load_thresholds("/nonexistent.toml")


def test_the_shipped_thresholds_judge_every_request_the_scenarios_make() -> None:
    shipped = load_thresholds(DEFAULT_THRESHOLDS)
    assert all(group.why for group in shipped.groups), "every group states its rationale"
    source = "\n".join(p.read_text() for p in (REPO / "locustfiles").glob("*.py"))
    names = set(re.findall(r'name=f?"((?:page|auth|api|stream|grpc): [^"{(]*)', source))
    names |= {f"grpc: {method}" for method in ("Generate", "GenerateStream (first token)")}
    assert names, "request names were found in the scenarios"
    unjudged = sorted(n for n in names if not any(g.matches(n) for g in shipped.groups))
    assert unjudged == []
