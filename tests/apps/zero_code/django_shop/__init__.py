"""A Django project that knows nothing of impactagent, served by gunicorn with --preload."""
