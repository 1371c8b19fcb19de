"""What the per-request observability work was slimmed to must still say the same thing (docs/benchmarks.md)."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from apps.observability.logs import JsonFormatter, _timestamp
from tests.conftest import ALL_DATABASES

REPO = Path(__file__).resolve().parents[2]
REQUEST_FIELDS = {"method", "path", "view", "status", "duration_ms", "user_id", "shards", "queries", "query_ms"}


def test_the_log_timestamp_is_what_datetime_isoformat_writes() -> None:
    moments = [0.0, 1.9995, 1.9999996, 1764900232.374, 1764900232.9999999, 1764900232.0005]
    moments += [random.Random(seed).uniform(1.6e9, 2.0e9) for seed in range(2000)]
    for created in moments:
        expected = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")
        assert _timestamp(created) == expected, created


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_the_request_line_carries_every_field_without_the_callers_frame(
    make_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    user = make_user(1501, "logged")
    client = Client()
    client.force_login(user)
    with caplog.at_level(logging.INFO, logger="qq.request"):
        assert client.get("/generations/", HTTP_X_REQUEST_ID="cost-test-1").status_code == 200
    [record] = [record for record in caplog.records if record.name == "qq.request"]
    line = json.loads(JsonFormatter().format(record))
    assert REQUEST_FIELDS <= set(line)
    assert {"ts", "level", "logger", "message", "request_id", "pid"} <= set(line)
    assert line["view"] == "content:list" and line["status"] == 200 and line["user_id"] == user.id
    assert line["request_id"] == "cost-test-1"
    assert line["queries"] >= 1 and line["shards"] == ["shard2"]


# In its own process: prometheus_client picks multi-process mode when it is first imported.
_MULTIPROCESS = """
from prometheus_client.parser import text_string_to_metric_families
from apps.observability import exposition, metrics
for seconds in (0.0004, 0.002, 0.002, 0.3):
    metrics.db_query_duration.labels("shard1").observe(seconds)
metrics.db_query_duration.labels("shard2").observe(0.01)
for family in text_string_to_metric_families(exposition.render().decode()):
    for sample in family.samples:
        if sample.name in ("qq_db_queries_total", "qq_db_query_duration_seconds_count"):
            print(family.type, sample.name, sample.labels["alias"], sample.value)
"""


def test_statements_are_counted_per_alias_from_the_latency_histogram_across_processes(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    runs = [
        subprocess.run([sys.executable, "-c", _MULTIPROCESS], cwd=REPO, env=env, capture_output=True, text=True)
        for _ in range(2)  # two processes: the second one's scrape sums both
    ]
    assert all(run.returncode == 0 for run in runs), runs[-1].stderr
    lines = set(runs[-1].stdout.splitlines())
    assert lines == {
        "counter qq_db_queries_total shard1 8.0",
        "counter qq_db_queries_total shard2 2.0",
        "histogram qq_db_query_duration_seconds_count shard1 8.0",
        "histogram qq_db_query_duration_seconds_count shard2 2.0",
    }


def test_a_line_is_byte_for_byte_what_json_dumps_writes_whatever_the_second_or_the_values() -> None:
    formatter = JsonFormatter()
    reference = json.JSONEncoder(ensure_ascii=False, default=str)
    fields = {"path": '/générations/\u2028"quoted"', "user_id": None, "shards": ["shard2"], "at": Path("/x")}
    for n, created in enumerate([1764900232.374, 1764900232.999, 1764900233.0004, 1764900232.5, 1.9999996]):
        record = logging.LogRecord("qq.request", logging.INFO, __file__, 0, "request %s", (n,), None)
        record.created = created
        record.request_id = f"id-{n}"
        record.fields = {**fields, "n": n, "ratio": n / 3}
        expected = {
            "ts": datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": "INFO",
            "logger": "qq.request",
            "message": f"request {n}",
            "request_id": f"id-{n}",
            "pid": record.process,
            **record.fields,
        }
        assert formatter.format(record) == reference.encode(expected)
