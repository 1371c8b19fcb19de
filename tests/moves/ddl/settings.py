"""The settings of tests/moves' child processes plus the test-only sharded app ``ddlnotes``."""

from __future__ import annotations

import os

from tests.moves.settings import *  # noqa: F403
from tests.moves.settings import INSTALLED_APPS, SHARDROUTER

VERSION = os.environ.get("QQ_DDL_MIGRATIONS", "v1")

INSTALLED_APPS = [*INSTALLED_APPS, "tests.moves.ddl.notes"]
SHARDROUTER = {**SHARDROUTER, "SHARDED_APPS": [*SHARDROUTER["SHARDED_APPS"], "ddlnotes"]}
MIGRATION_MODULES = {"ddlnotes": f"tests.moves.ddl.notes.migrations_{VERSION}"}
