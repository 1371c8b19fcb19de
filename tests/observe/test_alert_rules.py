"""Every alert rule is unit-tested with promtool, and has a runbook line in docs/observability.md."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from quantumquill.devstack.stack import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "quantumquill.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "alerts_test.yml"


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is not installed; run scripts/system-deps.sh (Debian: apt-get install prometheus).")
    return found


def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    check = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        check["alertname"] for test in tests for check in test.get("alert_rule_test", []) if check.get("exp_alerts")
    }
    assert set(alert_names()) - fired == set()


def test_every_alert_has_a_runbook_line_in_the_docs() -> None:
    docs = (REPO_ROOT / "docs" / "observability.md").read_text()
    headings = {m.lower() for m in re.findall(r"^#### (\w+)$", docs, flags=re.MULTILINE)}
    missing = [name for name in alert_names() if name.lower() not in headings]
    assert missing == [], f"alerts without a runbook section in docs/observability.md: {missing}"
