"""pytest plugin: ``--shard-audit`` fails a test run whose code ran queries that sharding would break.

Installed with the ``shardrouter`` distribution as a ``pytest11`` entry point
(or load it with ``-p shardrouter.pytest_plugin``). With the option, the audit
is on whatever the settings say; at the end the findings are listed worst first
with their call sites and the run fails while any remain, so a team can drive
the count to zero in CI.
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("shardrouter")
    group.addoption(
        "--shard-audit",
        action="store_true",
        default=False,
        help="record queries that a range shard map would break (SHARDROUTER['AUDIT']) and fail the run if any ran",
    )


def _audit_on(config: pytest.Config) -> bool:
    return bool(config.getoption("--shard-audit", default=False))


def pytest_configure(config: pytest.Config) -> None:
    if _audit_on(config):
        from shardrouter.audit import force_audit, recorder

        force_audit(True)
        recorder.persist = False  # the run's own findings are reported below; the test database goes away


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Before the last test's session fixtures (pytest-django's test databases) go, close the router's
    private control connection, so dropping the test database does not find it still in use."""
    if nextitem is None:
        from django.conf import settings

        if settings.configured:
            from shardrouter.control import control_connection

            control_connection.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _audit_on(session.config):
        return
    from shardrouter.audit import recorder

    if recorder.findings() and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _audit_on(config):
        return
    from shardrouter.audit import KINDS, recorder

    findings = recorder.findings()
    terminalreporter.section("sharding-readiness audit")
    if not findings:
        terminalreporter.write_line("no queries that sharding would break")
        return
    terminalreporter.write_line(
        f"{len(findings)} call site(s) run queries that sharding would break (the run fails until none remain):",
        red=True,
    )
    for finding in findings:
        terminalreporter.write_line(
            f"  {finding.kind:<24} {finding.count:>6}x  {finding.model:<24} {finding.call_site}"
        )
    terminalreporter.write_line("fixes:")
    for kind in sorted({f.kind for f in findings}, key=lambda k: KINDS[k].severity):
        terminalreporter.write_line(f"  {kind}: {KINDS[kind].fix}")
