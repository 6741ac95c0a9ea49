from django.urls import path

from . import manager_views, views

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
    path("plans/<int:pk>/items/<int:item_id>/seats/", views.item_seats, name="item_seats"),
    path(
        "plans/<int:pk>/items/<int:item_id>/assignment/",
        views.assignment_toggle,
        name="assignment_toggle",
    ),
    path("plans/<int:pk>/confirm/", views.confirm, name="confirm"),
    path("plans/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("my/", views.my_training, name="my_training"),
    path("my/<int:pk>/start/", views.enrollment_start, name="enrollment_start"),
    path("my/<int:pk>/progress/", views.enrollment_progress, name="enrollment_progress"),
    path("join/<uuid:token>/", views.join, name="join"),
    path("allocations/", manager_views.allocations, name="allocations"),
    path("allocations/do/", manager_views.allocation_action, name="allocation_action"),
    path("courses/", manager_views.my_courses, name="my_courses"),
    path("courses/<int:pk>/", manager_views.managed_course, name="managed_course"),
    path("courses/<int:pk>/invite/", manager_views.invite, name="invite"),
    path("invitations/<int:pk>/cancel/", manager_views.invitation_cancel, name="invitation_cancel"),
    path(
        "invitations/<int:pk>/reinvite/",
        manager_views.invitation_reinvite,
        name="invitation_reinvite",
    ),
    path("accept/<uuid:token>/", manager_views.accept, name="accept"),
    path(
        "assignments/<int:pk>/progress/",
        manager_views.assignment_progress,
        name="assignment_progress",
    ),
]
