"""Deployment files: gunicorn settings and the nginx load-balancer template with its renderer."""
