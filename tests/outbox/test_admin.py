import pytest
from django.core import mail
from django.urls import reverse

from outbox import services
from outbox.models import OutboxMessage
from tests.accounts.factories import UserFactory
from tests.support.admin_lists import assert_opens_filtered_or_not, open_list, whole_table_reads

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:outbox_outboxmessage_changelist")


@pytest.fixture
def support(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_support_sees_messages_read_only(support, organization):
    (message_id,) = services.message_enqueue(
        key="k", to="ana@x.test", subject="Hi", text="Body", kind="test", organization=organization
    )
    page = support.get(CHANGELIST + "?state=unsent").content.decode()
    assert "ana@x.test" in page and "waiting" in page
    detail = support.get(reverse("admin:outbox_outboxmessage_change", args=[message_id]))
    assert detail.status_code == 200 and b'name="subject"' not in detail.content
    assert support.get(reverse("admin:outbox_outboxmessage_add")).status_code == 403


def test_send_again_now_sends_the_unsent_ones_once(support, smtp):
    ids = services.message_enqueue(
        key="k", to=["ana@x.test", "ben@x.test"], subject="Hi", text="Body", kind="test"
    )
    smtp.down = True
    services.messages_send(message_ids=ids)  # fails: backing off now
    smtp.down = False
    services.message_send(message_id=ids[1], force=True)
    mail.outbox.clear()
    response = support.post(
        CHANGELIST, {"action": "send_again_now", "_selected_action": ids}, follow=True
    )
    assert "1 sent, 0 failed" in response.content.decode()
    assert [m.to for m in mail.outbox] == [["ana@x.test"]]
    assert OutboxMessage.objects.filter(sent_at__isnull=True).count() == 0


def test_the_outbox_list_costs_a_page_filtered_or_not(support, organization):
    for n in range(3):
        services.message_enqueue(
            key=f"m{n}", to=f"{n}@x.test", subject="Hi", text="Body " * 500, kind=f"k{n % 2}",
            organization=organization,
        )  # fmt: skip
    assert_opens_filtered_or_not(support, OutboxMessage, organization)
    for params in ({"state": "unsent"}, {"kind": "k1"}):
        response, queries = open_list(support, OutboxMessage, params)
        assert whole_table_reads(queries, OutboxMessage) == []
    # The list shows no bodies, so it does not read them.
    listing = [sql for sql in queries if sql.startswith('SELECT "outbox_outboxmessage"."id"')]
    assert listing and all('"text"' not in sql for sql in listing)
    assert [m.recipient for m in response.context["cl"].result_list] == ["1@x.test"]
