"""Django with impactagent, in one file: request metrics by route, a flag, and /metrics.

Run it: ``pip install -e ".[examples,prometheus]"`` then
``python -m examples.django_app runserver 127.0.0.1:8000``, and
``curl -X POST localhost:8000/checkout/beta-ann; curl localhost:8000/metrics``.
"""

from __future__ import annotations

import sys

import django
from django.conf import settings
from django.http import JsonResponse
from django.urls import path

from examples._shared import FLAGS, instrumented
from impactagent.integrations import wsgi
from impactagent.integrations.http_metrics import ROUTE_KEY

shop = instrumented("shop-django")
agent = shop.agent

settings.configure(
    DEBUG=False, SECRET_KEY="example-only", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
    MIDDLEWARE=[f"{__name__}.RouteLabel"],
)
django.setup()


class RouteLabel:
    """Django middleware: hand the matched route ("checkout/<str:user>") to impactagent.
    ``request.META`` is the WSGI environ the impactagent middleware sees."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        request.META[ROUTE_KEY] = request.resolver_match.route
        return None


def checkout(request, user: str):
    variant = shop.new_checkout(user)
    shop.checkouts.inc()
    return JsonResponse({"user": user, "new_checkout": variant})


urlpatterns = [path("checkout/<str:user>", checkout)]

from django.core.wsgi import get_wsgi_application  # noqa: E402  (after settings)

prometheus = agent.prometheus_wsgi_app()
django_app = wsgi.ImpactMiddleware(get_wsgi_application(), agent, flags=FLAGS)


def application(environ, start_response):
    """The WSGI entry point: /metrics for Prometheus, everything else to Django."""
    if environ.get("PATH_INFO") == "/metrics":
        return prometheus(environ, start_response)
    return django_app(environ, start_response)


if __name__ == "__main__":
    if sys.argv[1:2] == ["runserver"]:
        from wsgiref.simple_server import make_server

        host, _, port = (sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:8000").partition(":")
        make_server(host, int(port or 8000), application).serve_forever()
