from __future__ import annotations

from django.apps import AppConfig


class ShardRouterConfig(AppConfig):
    name = "shardrouter"
    verbose_name = "Shard router"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from . import checks  # noqa: F401 - registers the system checks
        from .audit import install_execute_wrapper

        connection_created.connect(install_execute_wrapper, dispatch_uid="shardrouter.audit.execute_wrapper")
        _connect_celery_signals()


def _connect_celery_signals() -> None:
    """Clear the shard context around every Celery task, so none leaks into the next one."""
    try:
        from celery.signals import task_postrun, task_prerun
    except ImportError:  # Celery is optional for the toolkit
        return
    from .context import clear_shard_context

    def clear(**_kwargs: object) -> None:
        clear_shard_context()

    task_prerun.connect(clear, weak=False, dispatch_uid="shardrouter.clear_before_task")
    task_postrun.connect(clear, weak=False, dispatch_uid="shardrouter.clear_after_task")
