# The web application image (Django behind gunicorn). Every endpoint comes from the environment at run
# time (see README); the embedded servers of `make run` are not used in containers. The same image runs the
# Celery worker: `celery -A quantumquill worker`, and the analytics warehouse sync: `python manage.py warehouse
# sync --follow` (one per warehouse; deploy/qq-warehouse-sync.service). The generation service has its own image:
# contentgen_service/Dockerfile.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=quantumquill.settings \
    GUNICORN_BIND=0.0.0.0:8000

WORKDIR /app
RUN useradd --system --create-home --home-dir /home/app app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .

USER app
EXPOSE 8000
# Static files are uploaded by the deploy (`manage.py collectstatic` with QQ_STORAGE=s3), not baked in.
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
