# The web application image. Every endpoint comes from the environment at run time (see README);
# the embedded servers of `make run` are not used in containers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=quantumquill.settings

WORKDIR /app
RUN useradd --system --create-home --home-dir /home/app app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .

USER app
EXPOSE 8000
CMD ["gunicorn", "quantumquill.wsgi", "--bind", "0.0.0.0:8000"]
