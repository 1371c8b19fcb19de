"""The content-generation model every test server loads, trained once per test session.

Registered for every folder by ``pytest_plugins`` in tests/conftest.py. It lives here, not in a folder's
conftest, because a session fixture imported into another conftest is a fixture of its own there: each
importing folder could train the model again (about 5 s of CPU each, a minute on a loaded machine). The
workers of a parallel run share one cache (under the run's common temporary folder): ``load_or_train`` holds a
lock while it trains, so the first worker trains and the others wait for it and load the result.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contentgen_service.backends.ngram.store import load_or_train


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache shared by every server of the session (trained once, here)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Each worker's base folder sits in the run's (``.../pytest-N/popen-gw0``); the cache goes next to them.
        path = tmp_path_factory.getbasetemp().parent / "contentgen-model-cache"
    else:
        path = tmp_path_factory.mktemp("contentgen-model-cache")
    load_or_train(path, order=3)
    return path
