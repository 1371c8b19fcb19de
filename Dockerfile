# The web application image (Django behind gunicorn). Every endpoint comes from the environment at run
# time (see README); the embedded servers of `make run` are not used in containers, so their PostgreSQL and
# Redis wheels (requirements-embedded.txt) are never installed here. The same image runs the Celery worker:
# `celery -A quantumquill worker`, and the analytics warehouse sync: `python manage.py warehouse sync --follow`
# (one per warehouse; deploy/qq-warehouse-sync.service). The generation service has its own image:
# contentgen_service/Dockerfile.
#
# Two stages: the first installs the pinned requirements into a virtualenv; the second copies that
# virtualenv and only the code that runs (no tests, benchmarks, load tests, docs or scripts).
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=quantumquill.settings \
    GUNICORN_BIND=0.0.0.0:8000

WORKDIR /app
# psql: the warehouse sync's first load into DuckDB reads the shards with it (docs/analytics.md, WAREHOUSE_PSQL).
RUN apt-get update && apt-get install --yes --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --create-home --home-dir /home/app app
COPY --from=build /opt/venv /opt/venv
COPY manage.py ./
COPY quantumquill ./quantumquill
COPY apps ./apps
COPY shardrouter ./shardrouter
COPY migrations_tooling ./migrations_tooling
COPY contentgen_service ./contentgen_service
COPY deploy ./deploy
COPY templates ./templates
COPY static ./static

USER app
EXPOSE 8000
# Static files are uploaded by the deploy (`manage.py collectstatic` with QQ_STORAGE=s3), not baked in.
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
