"""The project's settings with the shorter waits and cheaper password hashes of the tests, for their child processes.

The test process gets the same values from the fixtures of tests/moves/fixtures.py, which say why they keep every
test's meaning.
"""

from __future__ import annotations

from django.conf import global_settings

from quantumquill.settings import *  # noqa: F403
from quantumquill.settings import SHARDMOVE, SHARDROUTER

# Test users' passwords are hashed with MD5 (PBKDF2's hundreds of thousands of rounds cost 0.3 s of CPU a user); the
# default hashers stay listed, so a password hashed either way is checked.
CHEAP_PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    *(h for h in global_settings.PASSWORD_HASHERS if not h.endswith(".MD5PasswordHasher")),
]

# `start` measures its throttle baseline over one window of probes (1 s) instead of five.
QUICK_BASELINE_WINDOWS = 1
# Seconds between shard-map version checks (1 by default): `complete` and `cancel` wait 1 s, not 2.5 s, for a map.
QUICK_MAP_REFRESH_SECONDS = 0.25

SHARDMOVE = {**SHARDMOVE, "THROTTLE_BASELINE_WINDOWS": QUICK_BASELINE_WINDOWS}
SHARDROUTER = {**SHARDROUTER, "REFRESH_INTERVAL": QUICK_MAP_REFRESH_SECONDS}
PASSWORD_HASHERS = CHEAP_PASSWORD_HASHERS
