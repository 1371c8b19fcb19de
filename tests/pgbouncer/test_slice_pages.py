"""The content pages' tests, run with every connection going through PgBouncer in transaction mode."""

from tests.web.test_content_pages import *  # noqa: F403
