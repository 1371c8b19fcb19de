"""The JSON API and Celery jobs (claims included), with the test process, gunicorn and the worker all going
through PgBouncer in transaction mode."""

import pytest

from tests.generation import test_api
from tests.generation.test_api import (  # noqa: F401
    dana,
    eli,
    test_a_token_from_username_and_password_creates_a_generation_that_a_job_completes_on_my_shard,
    test_a_user_never_sees_streams_or_deletes_someone_elses_generation,
    test_bad_input_gets_400_with_a_message_per_field_and_nothing_is_stored,
    test_the_list_is_mine_only_newest_first_in_pages_of_twenty,
)
from tests.generation.test_jobs import (  # noqa: F401
    hal,
    test_duplicate_deliveries_of_a_job_produce_exactly_one_result,
)

pytestmark = [pytest.mark.slow, test_api.pytestmark]
