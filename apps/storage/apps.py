from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class StorageConfig(AppConfig):
    name = "apps.storage"
    label = "storage"
    verbose_name = "File storage and CDN"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
        from .conf import s3_credentials_problem

        # Fail at start-up, not with a 500 on the first upload, when S3 has no credentials to use.
        storages_setting: dict[str, dict[str, Any]] = settings.STORAGES
        problem = s3_credentials_problem(storages_setting)
        if problem:
            raise ImproperlyConfigured(problem)
