"""Static files served by the app itself (``QQ_STORAGE=local``), also under gunicorn."""

from __future__ import annotations

import os
from typing import Any

from whitenoise.middleware import WhiteNoiseMiddleware


class LocalStaticFilesMiddleware(WhiteNoiseMiddleware):
    """whitenoise serving straight from the static source folders (``WHITENOISE_USE_FINDERS``).

    A collected ``STATIC_ROOT`` is optional here: without one there is nothing to
    warn about, since every file comes from the finders.
    """

    def add_files(self, root: Any, prefix: str | None = None) -> None:
        if self.static_root and os.fspath(root) == os.fspath(self.static_root) and not os.path.isdir(root):
            return
        super().add_files(root, prefix)
