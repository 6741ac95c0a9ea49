"""A view that lets a refusal escape, to prove the error boundary (config/errors.py)."""

from django.urls import include, path

from credits.services import InsufficientCredits
from training.plans.services import PlanRefused


def refuse(request):
    raise PlanRefused("This plan is closed; create a new one.")


def short(request):
    raise InsufficientCredits(shortfall=1_234_567, available=0)


urlpatterns = [
    path("refuse/", refuse),
    path("short/", short),
    path("", include("config.urls")),
]
