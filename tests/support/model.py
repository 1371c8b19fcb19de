"""The content-generation model every test server loads, trained once per test session.

Registered for every folder by ``pytest_plugins`` in tests/conftest.py. It lives here, not in a folder's
conftest, because a session fixture imported into another conftest is a fixture of its own there: each
importing folder could train the model again (about 5 s of CPU each, a minute on a loaded machine).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contentgen_service.backends.ngram.store import load_or_train


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache shared by every server of the session (trained once, here)."""
    path = tmp_path_factory.mktemp("contentgen-model-cache")
    load_or_train(path, order=3)
    return path
