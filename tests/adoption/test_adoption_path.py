"""The adoption path, walked for real on a second Django project we did not shape around the toolkit.

A fresh virtualenv holds only the toolkit's wheels, the example "notebook"
project (function views, foreign keys to the user, a staff report across users,
raw SQL, a signal handler, a Celery task) and their dependencies. Invariants:
the wheels import without QuantumQuill on the path; the audit finds every
planted kind of query by its call site and fails the project's test run; the
fixed project is clean under the audit and its pages work with the router in
monolith mode; a live move from the monolith to two shard servers under a write
load through the project's own pages loses no acknowledged note and fails no
request.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adoption.example import PROJECT, AdoptionSandbox, line_of
from tests.support import wait_until

pytestmark = pytest.mark.slow

VIEWS = PROJECT / "notes" / "views.py"
PLANTED = [
    # (kind, model, file, code of the line that runs the query: querysets are lazy, so a finding points at
    # the line that evaluates one, which may be below the line that built it)
    ("no_user", "notes.Note", VIEWS, "return page(nb.title, [n.body for n in notes])"),
    ("no_user", "notes.Note", VIEWS, "for r in per_user}"),
    ("no_user", "notes.Notebook", PROJECT / "notes" / "signals.py", "Notebook.objects.filter(pk=instance.notebook_id)"),
    ("no_user", "notes.Note", PROJECT / "notes" / "tasks.py", "Note.objects.filter(created__lt=cutoff)"),
    ("cross_database_join", "notes.Note", VIEWS, 'return page("My notes"'),
    ("cross_database_relation", "notes.Note", VIEWS, "Note(notebook=nb, author=request.user"),
    ("cross_database_relation", "notes.Notebook", VIEWS, "Notebook.objects.create(owner=request.user"),
    ("raw_sql", "notes.Note", VIEWS, "cursor.execute("),
    ("spans_ranges", "notes.Note", VIEWS, 'return page("Feed"'),
]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdoptionSandbox]:
    stack_shards = dict(item.split("=", 1) for item in os.environ["SHARD_DATABASE_URLS"].split(","))
    box = AdoptionSandbox(
        tmp_path_factory.mktemp("adoption"),
        os.environ["DATABASE_URL"],
        f"nb_adopt_{uuid.uuid4().hex[:8]}",
        # Two shard databases on two other servers, as in production.
        shard_servers={"shard1": stack_shards["shard1"], "shard2": stack_shards["shard2"]},
    )
    box.build()
    box.create_database()
    try:
        yield box
    finally:
        box.drop_databases()


def test_the_wheels_install_and_import_without_quantumquill_on_the_path(sandbox: AdoptionSandbox) -> None:
    run = sandbox.run(
        "-c",
        "import importlib.util, shardrouter, migrations_tooling;"
        "print(shardrouter.__file__); print(migrations_tooling.__file__);"
        "print(importlib.util.find_spec('quantumquill'), importlib.util.find_spec('apps'))",
    )
    assert run.returncode == 0, run.output
    router_file, tooling_file, absent = run.output.strip().splitlines()
    site_packages = str(sandbox.venv)
    assert router_file.startswith(site_packages) and tooling_file.startswith(site_packages)
    assert absent == "None None"
    metadata = sandbox.run("-m", "pip", "show", "django-shardmove")
    assert "Requires: Django, django-shardrouter, psycopg" in metadata.output


def test_the_audit_fails_the_projects_tests_and_names_every_planted_query(sandbox: AdoptionSandbox) -> None:
    plain = sandbox.run("-m", "pytest", "-q")
    assert plain.returncode == 0, plain.output  # the monolith's own suite passes without the audit

    audited = sandbox.run("-m", "pytest", "-q", "--shard-audit")

    assert audited.returncode == 1, audited.output
    assert "7 passed" in audited.output  # the tests pass: the audit alone fails the run
    report = audited.output.split("sharding-readiness audit", 1)[1]
    for kind, model, path, code in PLANTED:
        site = f"{path.relative_to(PROJECT)}:{line_of(path, code)} in "
        assert any(kind in line and model in line and site in line for line in report.splitlines()), (
            f"{kind} on {model} at {site} missing from:\n{report}"
        )


def test_the_report_command_lists_findings_worst_first_with_the_fix(sandbox: AdoptionSandbox) -> None:
    audit_env = {"NOTEBOOK_AUDIT": "1"}
    assert sandbox.run("manage.py", "migrate", "--noinput", **audit_env).returncode == 0
    sandbox.run("manage.py", "shardaudit", "reset", **audit_env)
    script = (
        "import django; django.setup();"
        "from django.contrib.auth import get_user_model; from django.test import Client;"
        "u = get_user_model().objects.create_user('dora', password='pw', id=7);"
        "c = Client(); c.force_login(u);"
        "assert c.post('/', {'title': 'x'}).status_code == 302;"
        "assert c.get('/search/', {'q': 'x'}).status_code == 200"
    )
    assert sandbox.run("-c", script, **audit_env).returncode == 0

    check = sandbox.run("manage.py", "check", **audit_env)
    report = sandbox.run("manage.py", "shardaudit", "report", "--format", "json", **audit_env)

    assert "shardrouter.W030" in check.output and "shardaudit report" in check.output
    assert report.returncode == 0, report.output
    findings = json.loads(report.stdout)["findings"]
    kinds = [f["kind"] for f in findings]
    assert kinds.index("cross_database_relation") < kinds.index("raw_sql")  # worst first
    raw = next(f for f in findings if f["kind"] == "raw_sql")
    assert raw["call_site"].startswith(f"notes/views.py:{line_of(VIEWS, 'cursor.execute(')}")
    assert "%s" in raw["example"] and "dora" not in raw["example"]  # placeholders, never values
    assert raw["fix"]
    assert sandbox.run("manage.py", "shardaudit", "reset", **audit_env).returncode == 0
    after = sandbox.run("manage.py", "shardaudit", "report", "--format", "json", **audit_env)
    assert json.loads(after.stdout) == {"findings": []}


def test_the_fixed_project_is_clean_under_the_audit_and_its_pages_work_in_monolith_mode(
    sandbox: AdoptionSandbox,
) -> None:
    sandbox.apply_fixes()
    sandbox.create_database()

    audited = sandbox.run("-m", "pytest", "-q", "--shard-audit")
    check = sandbox.run("manage.py", "check")

    assert audited.returncode == 0, audited.output
    assert "7 passed" in audited.output and "no queries that sharding would break" in audited.output
    assert check.returncode == 0, check.output  # the router's own checks pass on the sharded models
    assert Path(sandbox.project / "notebook_site" / "sharding.py").read_text().count('"notes"') == 1


# Users on both sides of the boundary the moves draw (0 | 1000 | MAX).
MOVE_USERS = [5, 600, 1500, 70_000]


def test_moving_the_fixed_project_to_two_shards_under_load_loses_no_note(sandbox: AdoptionSandbox) -> None:
    sandbox.apply_fixes()
    sandbox.create_database()
    env = sandbox.sharded_env()
    for command in (("migrate", "--noinput"), ("migrate_shards",)):
        run = sandbox.run("manage.py", *command, **env)
        assert run.returncode == 0, run.output
    seed = (
        "import django, json; django.setup();"
        "from django.contrib.auth import get_user_model; from notes.models import Note, Notebook;"
        "out = {};"
        f"users = {MOVE_USERS!r};"
        "[get_user_model().objects.create_user(f'u{u}', password='pw', id=u) for u in users];"
        "nbs = {u: Notebook.objects.create(user_id=u, title=f'nb{u}') for u in users};"
        "[Note.objects.create(user_id=u, notebook_id=nbs[u].pk, body=f'seed{u}-{i}') for u in users for i in range(30)];"
        "print(json.dumps({u: nb.pk for u, nb in nbs.items()}))"
    )
    seeded = sandbox.run("-c", seed, **env)
    assert seeded.returncode == 0, seeded.output
    notebooks = json.loads(seeded.stdout)
    ledger, errors, stop = (sandbox.root / name for name in ("ledger.txt", "errors.txt", "stop"))
    load = sandbox.popen(
        str(Path(__file__).with_name("load_notes.py")),
        str(ledger),
        str(errors),
        str(stop),
        *(f"{u}:{nb}" for u, nb in notebooks.items()),
        **env,
    )
    try:
        wait_until(lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 20, timeout=60, what="load")
        for number, (lo, hi, target) in enumerate((("0", "1000", "shard1"), ("1000", "MAX", "shard2")), start=1):
            for step in (
                ("start", lo, hi, "--to", target, "--wait"),
                ("verify", str(number)),
                ("switch-reads", str(number)),
                ("switch-writes", str(number)),
                ("verify", str(number)),
                ("complete", str(number)),
            ):
                before = len(ledger.read_text().splitlines())
                run = sandbox.run("manage.py", "shardmove", *step, timeout=240, **env)
                assert run.returncode == 0, f"shardmove {' '.join(step)}:\n{run.output}"
                # Users keep writing through every step.
                wait_until(lambda b=before: len(ledger.read_text().splitlines()) >= b + 5, timeout=60, what="writes")
    finally:
        stop.touch()
        load.wait(timeout=60)
    assert not errors.exists() or errors.read_text() == "", errors.read_text()

    acknowledged = {tuple(line.split(" ")) for line in ledger.read_text().splitlines()}
    where: dict[str, list[tuple[object, ...]]] = {
        alias: sandbox.rows(alias, "SELECT user_id::text, id::text, body FROM notes_note")
        for alias in ("default", "shard1", "shard2")
    }
    assert where["default"] == []  # complete removed the moved rows from the monolith
    assert {r for r in where["shard1"]} | {r for r in where["shard2"]} >= acknowledged
    assert all(int(str(r[0])) < 1000 for r in where["shard1"]) and all(int(str(r[0])) >= 1000 for r in where["shard2"])
    stored = where["shard1"] + where["shard2"]
    assert len(stored) == len(set(stored)) == len(acknowledged) + 30 * len(MOVE_USERS)  # no loss, no duplicate
