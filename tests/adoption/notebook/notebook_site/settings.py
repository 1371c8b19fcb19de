# Notebook: a plain Django monolith. Databases come from NOTEBOOK_DATABASE_URL (and NOTEBOOK_SHARD_URLS once
# it is sharded); sharding.py holds what the sharding toolkit needs.
import os
from urllib.parse import urlsplit

from notebook_site.sharding import SHARDED_APPS, SHARDING_MIDDLEWARE


def db(url):
    u = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": u.path.lstrip("/"),
        "USER": u.username or "",
        "PASSWORD": u.password or "",
        "HOST": u.hostname or "",
        "PORT": str(u.port or ""),
    }


SECRET_KEY = os.environ.get("NOTEBOOK_SECRET_KEY", "notebook-example-only")
DEBUG = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "notebook_site.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {"default": db(os.environ["NOTEBOOK_DATABASE_URL"])}
for item in filter(None, os.environ.get("NOTEBOOK_SHARD_URLS", "").split(",")):
    alias, _, url = item.partition("=")
    DATABASES[alias.strip()] = db(url.strip())

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "shardrouter",
    "notes",
]
if os.environ.get("NOTEBOOK_MOVES") == "1":
    INSTALLED_APPS.append("migrations_tooling")

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    *SHARDING_MIDDLEWARE,
]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]

DATABASE_ROUTERS = ["shardrouter.router.ShardRouter"]
SHARDROUTER = {
    "SHARDED_APPS": SHARDED_APPS,
    "AUDIT": os.environ.get("NOTEBOOK_AUDIT") == "1",
    "AUDIT_SHARDED_APPS": ["notes"],
    "AUDIT_MAP": os.environ.get("NOTEBOOK_AUDIT_MAP", "0:1000=shard1,1000:MAX=shard2"),
}

CELERY_TASK_ALWAYS_EAGER = True
