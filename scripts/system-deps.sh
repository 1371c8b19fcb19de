#!/usr/bin/env bash
# Install the system packages the end-to-end tests drive: nginx (load balancer), Chromium (browser tests), PgBouncer,
# the font and PDF tools of the export tests, what the security tests use, and Prometheus (with promtool).
set -euo pipefail
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# PgBouncer in transaction mode in front of each PostgreSQL server (docs/connections.md).
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
# PDF exports: a Unicode font to render with, and pdftotext for the tests to read the result back.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
command -v pdftotext >/dev/null 2>&1 || missing+=(poppler-utils)
# Security: a fallback PDF font for emoji and symbols; npm fetches axe-core for the accessibility test.
[ -f /usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf ] || missing+=(fonts-symbola)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Observability: Prometheus and promtool (alert-rule unit tests, the Prometheus tests, `make observe`).
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
# The RabbitMQ broker tests: rabbitmqctl creates and removes each test's vhost (the server runs on 127.0.0.1:5672).
command -v rabbitmqctl >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmqctl ] || missing+=(rabbitmq-server)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing system packages: ${missing[*]}. Install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}) and re-run." >&2
  exit 1
fi
echo "Installing ${missing[*]} with apt-get ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
