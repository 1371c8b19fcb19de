"""The router's tests, run with every connection going through PgBouncer in transaction mode."""

from tests.shardrouter.test_routing import *  # noqa: F403
