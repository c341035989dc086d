"""Views that decide a flag, wait for a second request to be in flight, and then count."""

import threading

from django.http import HttpResponse, JsonResponse
from django.urls import include, path

from impactagent.integrations.django import get_agent, metrics_view

agent = get_agent()
checkouts = agent.counter("checkout_total", "Completed checkouts", flags=["new-checkout"])
both_in_flight = threading.Barrier(2)


@agent.flag("new-checkout")
def new_checkout(user):
    return {"name": "blue", "enabled": True} if user.startswith("beta-") else False


def checkout(request, user):
    variant = new_checkout(user)
    if request.GET.get("together"):
        both_in_flight.wait(timeout=10)  # the other request decided its flag by now
    checkouts.inc()
    return JsonResponse({"user": user, "variant": bool(variant)})


def health(request):
    return HttpResponse("ok")


def boom(request):
    raise RuntimeError("boom")


shop = [path("checkout/<str:user>", checkout), path("boom", boom)]
urlpatterns = [path("", health), path("shop/", include(shop)), path("health", health),
               path("metrics", metrics_view)]
