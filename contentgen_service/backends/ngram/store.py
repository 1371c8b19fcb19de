"""Training the n-gram model once and caching it on disk."""

from __future__ import annotations

import fcntl
import gc
import logging
import os
import pickle
import tempfile
import time
from pathlib import Path

from contentgen_service.backends.ngram import corpus
from contentgen_service.backends.ngram.model import KneserNeyModel, train

logger = logging.getLogger(__name__)

# Bump when the model's structure or the corpus cleaning changes, so that
# caches written by older code are not loaded.
MODEL_FORMAT = 2


def cache_path(cache_dir: Path, order: int, fingerprint: str) -> Path:
    """Return where the model for this corpus fingerprint and order is cached."""
    return cache_dir / f"ngram-v{MODEL_FORMAT}-order{order}-{fingerprint[:24]}.pickle"


def load_or_train(cache_dir: Path, *, order: int = 3) -> KneserNeyModel:
    """Return the model for the installed standard library, training it if needed.

    The first start trains from the library's docstrings (a few seconds) and
    writes the model under ``cache_dir``; later starts load it. A lock file
    makes concurrent starts sharing the directory train only once. The cache
    directory is created private (mode 0700) because a pickle is code: keep it
    writable only by the service's user.
    """
    root = corpus.stdlib_root()
    files = corpus.source_files(root)
    path = cache_path(cache_dir, order, corpus.fingerprint(root, files))
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(cache_dir / ".ngram.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        model = _load(path)
        if model is not None:
            return model
        started = time.monotonic()
        model = train(corpus.training_sentences(files), order=order)
        _save(model, path)
        logger.info(
            "trained %d-gram model on %d standard library files in %.1f s (vocabulary %d words), cached at %s",
            order,
            len(files),
            time.monotonic() - started,
            len(model.vocabulary),
            path,
        )
        return model


def _load(path: Path) -> KneserNeyModel | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    # Unpickling hundreds of thousands of small dicts is much faster without
    # the cycle collector scanning them as they are created.
    gc.disable()
    try:
        model = pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError) as exc:
        # A truncated file, or one written by other code: retrain over it.
        logger.warning("ignoring unreadable model cache %s (%s); retraining", path, exc)
        return None
    finally:
        gc.enable()
    if not isinstance(model, KneserNeyModel):
        logger.warning("ignoring model cache %s: it holds a %s", path, type(model).__name__)
        return None
    return model


def _save(model: KneserNeyModel, path: Path) -> None:
    # Write then rename, so a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            pickle.dump(model, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
