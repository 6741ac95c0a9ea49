from django.urls import path

from . import simulated, views

app_name = "billing"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("subscription/new/", views.subscribe, name="subscribe"),
    path("subscription/upgrade/", views.subscription_upgrade, name="subscription_upgrade"),
    path("subscription/cancel/", views.subscription_cancel, name="subscription_cancel"),
    path("portal/", views.customer_portal, name="customer_portal"),
    path("add-credits/", views.add_credits, name="add_credits"),
    path("purchases/new/", views.purchase_create, name="purchase_create"),
    path("purchases/<int:pk>/", views.purchase, name="purchase"),
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
    path(
        "simulated-checkout/<str:session_id>/",
        simulated.simulated_checkout,
        name="simulated_checkout",
    ),
    path("simulated-setup/<str:session_id>/", simulated.simulated_setup, name="simulated_setup"),
    path("auto-top-up/", views.auto_top_up, name="auto_top_up"),
]
