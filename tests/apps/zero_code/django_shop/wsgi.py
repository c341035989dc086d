import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.zero_code.django_shop.settings")
application = get_wsgi_application()
