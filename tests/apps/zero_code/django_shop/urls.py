from django.http import JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from tests.apps.zero_code import unleash


@require_GET
def hello(request, user):
    return JsonResponse({"dark_mode": unleash.dark_mode(user)})


@require_POST
def checkout(request, user):
    variant = unleash.checkout_variant(user)
    return JsonResponse({"new_checkout": variant},
                        status=402 if variant == "disabled" else 200)


def boom(request):
    raise RuntimeError("the app's own bug")


urlpatterns = [
    path("hello/<str:user>", hello),
    path("checkout/<str:user>", checkout),
    path("boom", boom),
]
