from django.urls import path

from . import views

app_name = "training"
urlpatterns = [
    path("checkout/", views.checkout, name="checkout"),
    path("plans/", views.plans, name="plans"),
    path("plans/<int:pk>/", views.plan, name="plan"),
    path("plans/<int:pk>/participants/", views.participants_add, name="participants_add"),
    path(
        "plans/<int:pk>/participants/<int:participant_id>/remove/",
        views.participant_remove,
        name="participant_remove",
    ),
    path("plans/<int:pk>/confirm/", views.confirm, name="confirm"),
    path("plans/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("my/", views.my_training, name="my_training"),
    path("my/<int:pk>/start/", views.enrollment_start, name="enrollment_start"),
    path("my/<int:pk>/progress/", views.enrollment_progress, name="enrollment_progress"),
    path("join/<uuid:token>/", views.join, name="join"),
]
