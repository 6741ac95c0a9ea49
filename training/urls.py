from django.urls import path

from .allocations import views as allocations
from .invitations import views as invitations
from .learner import views as learner
from .plans import views as plans

app_name = "training"
urlpatterns = [
    path("checkout/", plans.checkout, name="checkout"),
    path("plans/", plans.plans, name="plans"),
    path("plans/<int:pk>/", plans.plan, name="plan"),
    path("plans/<int:pk>/participants/", plans.participants_add, name="participants_add"),
    path("plans/<int:pk>/members/", plans.member_search, name="member_search"),
    path(
        "plans/<int:pk>/participants/remove/",
        plans.participants_remove,
        name="participants_remove",
    ),
    path(
        "plans/<int:pk>/participants/<int:participant_id>/remove/",
        plans.participant_remove,
        name="participant_remove",
    ),
    path(
        "plans/<int:pk>/participants/<int:participant_id>/replace/",
        plans.participant_replace,
        name="participant_replace",
    ),
    path("plans/not-started/", plans.not_started, name="not_started"),
    path("plans/<int:pk>/items/<int:item_id>/seats/", plans.item_seats, name="item_seats"),
    path(
        "plans/<int:pk>/items/<int:item_id>/assignment/",
        plans.assignment_toggle,
        name="assignment_toggle",
    ),
    path("plans/<int:pk>/confirm/", plans.confirm, name="confirm"),
    path("plans/<int:pk>/cancel/", plans.cancel, name="cancel"),
    path("my/", learner.my_training, name="my_training"),
    path("my/<int:pk>/start/", learner.enrollment_start, name="enrollment_start"),
    path("my/<int:pk>/progress/", learner.enrollment_progress, name="enrollment_progress"),
    path("join/<uuid:token>/", invitations.join, name="join"),
    path("allocations/", allocations.allocations, name="allocations"),
    path("allocations/do/", allocations.allocation_action, name="allocation_action"),
    path("allocations/members/", allocations.member_suggestions, name="allocation_members"),
    path("courses/", invitations.my_courses, name="my_courses"),
    path("courses/<int:pk>/", invitations.managed_course, name="managed_course"),
    path("courses/<int:pk>/invite/", invitations.invite, name="invite"),
    path(
        "courses/<int:pk>/request/",
        allocations.credit_request_create,
        name="credit_request_create",
    ),
    path(
        "requests/<int:pk>/answer/",
        allocations.credit_request_answer,
        name="credit_request_answer",
    ),
    path("invitations/<int:pk>/cancel/", invitations.invitation_cancel, name="invitation_cancel"),
    path(
        "invitations/<int:pk>/replace/",
        invitations.invitation_replace,
        name="invitation_replace",
    ),
    path(
        "invitations/<int:pk>/reinvite/",
        invitations.invitation_reinvite,
        name="invitation_reinvite",
    ),
    path("accept/<uuid:token>/", invitations.accept, name="accept"),
    path(
        "assignments/<int:pk>/progress/",
        learner.assignment_progress,
        name="assignment_progress",
    ),
]
