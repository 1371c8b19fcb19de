"""The export tests (documents on the shards, files in S3), run with every connection going through PgBouncer."""

from tests.storage.conftest import aws_environment, buckets, s3_server  # noqa: F401
from tests.storage.test_exports import *  # noqa: F403
