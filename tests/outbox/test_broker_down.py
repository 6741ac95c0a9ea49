"""Confirm users while the Celery broker cannot be reached: the plan is confirmed and
charged, the request answers at once, and the emails go out through the sweep later."""

import socket
import time

import pytest
from django.core import mail
from django.urls import reverse

from config.celery import app
from credits import selectors
from outbox import tasks
from outbox.models import OutboxMessage
from tests.credits.factories import grant
from tests.training.factories import confirm_form, plan_with

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once it is closed


@pytest.fixture
def broker_unreachable():
    """The real publish path (tasks are eager in tests), to a port nobody listens on."""
    saved = app.conf.broker_url, app.conf.task_always_eager
    app.conf.broker_url = f"redis://127.0.0.1:{_closed_port()}/0"
    app.conf.task_always_eager = False
    app._pool, app.amqp._producer_pool = None, None  # connections to the real broker
    yield
    app.conf.broker_url, app.conf.task_always_eager = saved
    app._pool, app.amqp._producer_pool = None, None


def test_confirm_users_succeeds_with_the_broker_down_and_the_sweep_sends_later(
    admin_client, organization, admin, broker_unreachable, django_capture_on_commit_callbacks
):
    grant(organization, 10)
    plan = plan_with(organization, admin, emails=["a@acme.test", "b@acme.test"])
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(
            reverse("training:confirm", args=[plan.pk]), confirm_form(plan)
        )
    assert callbacks, "the emails are handed to the broker after the commit"
    assert response.status_code == 302
    assert time.monotonic() - started < 5
    plan.refresh_from_db()
    assert plan.status == "confirmed"
    assert selectors.organization_balance(organization=organization).total == 8
    assert mail.outbox == []
    assert OutboxMessage.objects.filter(sent_at__isnull=True).count() == 2

    # The broker is back; beat's next sweep sends what it missed, once each.
    tasks.sweep()
    tasks.sweep()
    assert sorted(m.to[0] for m in mail.outbox) == ["a@acme.test", "b@acme.test"]
