"""Observability of the platform: Prometheus metrics, readiness, JSON request logs, traces (docs/observability.md)."""
