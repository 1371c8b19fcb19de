"""The project's settings, collecting static files from a test folder (``QQ_TEST_STATIC_DIR``) instead of ``static/``.

Storage comes from the environment exactly as in a deployment; only the
source folder changes, so a test can edit a file between two runs.
"""

from __future__ import annotations

import os

from quantumquill.settings import *  # noqa: F403

STATICFILES_DIRS = [os.environ["QQ_TEST_STATIC_DIR"]]
