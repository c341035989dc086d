"""A Django project's settings.py, as a user writes it for impactagent."""

import os

SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.apps.django_site.urls"
MIDDLEWARE = ["impactagent.integrations.django.ImpactMiddleware"]
IMPACTAGENT = {
    "app_name": "shop-django",
    "url": os.environ.get("TEST_UNLEASH_URL"),
    "api_key": "default:development.token" if os.environ.get("TEST_UNLEASH_URL") else None,
    "flush_interval": 0.2,
    "flags": ["new-checkout"],
}
