"""The JSON API of generations (``/api/v1/``): Django REST framework, OpenAPI by drf-spectacular."""
