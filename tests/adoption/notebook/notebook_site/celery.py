import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notebook_site.settings")
app = Celery("notebook_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
