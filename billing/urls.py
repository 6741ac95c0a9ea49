from django.urls import path

from . import views

app_name = "billing"
urlpatterns = [
    path("add-credits/", views.add_credits, name="add_credits"),
    path("purchases/new/", views.purchase_create, name="purchase_create"),
    path("purchases/<int:pk>/", views.purchase, name="purchase"),
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
    path(
        "simulated-checkout/<str:session_id>/",
        views.simulated_checkout,
        name="simulated_checkout",
    ),
]
