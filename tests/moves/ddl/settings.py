"""The project's settings plus the test-only sharded app ``ddlnotes`` (child processes of tests/moves only)."""

from __future__ import annotations

import os

from quantumquill.settings import *  # noqa: F403
from quantumquill.settings import INSTALLED_APPS, SHARDROUTER

VERSION = os.environ.get("QQ_DDL_MIGRATIONS", "v1")

INSTALLED_APPS = [*INSTALLED_APPS, "tests.moves.ddl.notes"]
SHARDROUTER = {**SHARDROUTER, "SHARDED_APPS": [*SHARDROUTER["SHARDED_APPS"], "ddlnotes"]}
MIGRATION_MODULES = {"ddlnotes": f"tests.moves.ddl.notes.migrations_{VERSION}"}
