"""The loader knows the source tables exactly, and charts never let text through unescaped."""

from __future__ import annotations

from apps.analytics.charts import bar_chart, line_chart
from apps.analytics.facts import KNOWN_COLUMNS
from apps.analytics.pgoutput import format_lsn, parse_lsn
from apps.content.models import Generation, UsageEvent


def test_the_loader_knows_every_column_of_the_captured_tables_so_a_new_one_is_noticed() -> None:
    # A migration that adds a column must update apps/analytics/facts.py too: the sync would stop that table.
    for model in (Generation, UsageEvent):
        columns = {f.column for f in model._meta.concrete_fields}
        assert KNOWN_COLUMNS[model._meta.db_table] == columns, model._meta.db_table


def test_positions_print_and_parse_as_postgresql_writes_them() -> None:
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    assert parse_lsn("0/10") == 16


def test_chart_labels_are_escaped() -> None:
    svg = line_chart("<b>", ["<i>"], {"<script>": [1.0]}) + bar_chart("t", ["<x>"], [2.0])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "<i>" not in svg and "<x>" not in svg
