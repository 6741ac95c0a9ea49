"""Managers asking for credits (issue 18, part 4): one request at a time per course, the
admins told, an answer given once whatever the number of tabs, the credits moved pool →
course → manager through the ledger or not at all."""

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Membership
from credits import selectors
from credits.audit import ledger_audit
from credits.models import LedgerTransaction
from tests.accounts.factories import member
from tests.catalog.factories import LevelFactory
from tests.credits.factories import grant
from tests.support.threads import run_threads
from training.allocations import requests
from training.allocations import services as allocations
from training.models import CreditRequest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _audit(request):
    yield
    report = ledger_audit()
    assert report.ok, report.violations


@pytest.fixture
def managed(organization, manager):
    course = LevelFactory(credit_cost=1).course
    return allocations.manager_register(organization=organization, course=course, user=manager)


def ask(managed, quantity=3, note="", token=None):
    return requests.credit_request_create(
        manager=managed, quantity=quantity, note=note, token=token or uuid.uuid4()
    )


def manager_available(managed) -> int:
    return allocations.figures(account=allocations.manager_account_of(managed)).available


def test_a_request_emails_every_admin_and_a_double_submit_is_one_request(
    organization, admin, managed, mailoutbox, django_capture_on_commit_callbacks
):
    second_admin = member(organization, Membership.Role.ADMIN, email="second@acme.test")
    token = uuid.uuid4()
    with django_capture_on_commit_callbacks(execute=True):
        first = ask(managed, 4, note="Onboarding wave of March", token=token)
        again = ask(managed, 4, note="Onboarding wave of March", token=token)
    assert first.pk == again.pk and CreditRequest.objects.count() == 1
    assert sorted(m.to[0] for m in mailoutbox) == sorted([admin.email, second_admin.email])
    assert "asks for 4 more credits" in mailoutbox[0].body
    assert "Onboarding wave of March" in mailoutbox[0].body


def test_asking_again_while_a_request_waits_is_refused_with_the_pending_one(managed):
    ask(managed, 3)
    with pytest.raises(requests.RequestRefused, match="already asked for 3 credits"):
        ask(managed, 5)
    assert CreditRequest.objects.count() == 1


def test_approving_moves_the_credits_from_the_pool_through_the_course_to_the_manager(
    organization, admin, managed, mailoutbox, django_capture_on_commit_callbacks
):
    grant(organization, 10)
    allocations.course_allocate(
        organization=organization, course=managed.course, quantity=1, actor=admin
    )
    asked = ask(managed, 3)
    with django_capture_on_commit_callbacks(execute=True):
        requests.credit_request_approve(
            request_id=asked.pk, organization=organization, actor=admin, note="Go ahead"
        )
    asked.refresh_from_db()
    assert asked.status == "approved" and asked.answered_by == admin
    assert manager_available(managed) == 3
    # The course had one credit: two came from the pool, then three went to the manager.
    assert selectors.organization_balance(organization=organization).total == 7
    course_account = allocations.ledger.course_account(
        organization=organization, course=managed.course
    )
    assert allocations.figures(account=course_account).available == 0
    (told,) = [m for m in mailoutbox if m.to == [managed.user.email]]
    assert "was approved" in told.body and "Go ahead" in told.body


def test_approving_with_a_short_pool_moves_nothing_and_keeps_the_request_pending(
    organization, admin, managed
):
    grant(organization, 2)
    asked = ask(managed, 3)
    with pytest.raises(requests.RequestRefused, match="the pool has 2 credits available"):
        requests.credit_request_approve(request_id=asked.pk, organization=organization, actor=admin)
    asked.refresh_from_db()
    assert asked.status == "pending" and manager_available(managed) == 0
    assert selectors.organization_balance(organization=organization).total == 2
    assert not LedgerTransaction.objects.filter(kind="transfer").exists()


def test_declining_moves_nothing_and_tells_the_manager_why(
    organization, admin, managed, mailoutbox, django_capture_on_commit_callbacks
):
    grant(organization, 10)
    asked = ask(managed, 3)
    with django_capture_on_commit_callbacks(execute=True):
        requests.credit_request_decline(
            request_id=asked.pk, organization=organization, actor=admin, note="Budget is frozen"
        )
    assert manager_available(managed) == 0
    (told,) = [m for m in mailoutbox if m.to == [managed.user.email]]
    assert "was declined" in told.body and "Budget is frozen" in told.body
    # Answered: the manager may ask again.
    assert ask(managed, 2).status == "pending"


@pytest.mark.django_db(transaction=True)
def test_a_request_approved_from_many_tabs_at_once_transfers_once(organization, admin, managed):
    grant(organization, 50)
    for _ in range(5):  # many rounds: each a fresh request answered from 8 tabs at once
        asked = ask(managed, 3)
        before = manager_available(managed)

        def answer(n: int, asked=asked) -> str:
            try:
                if n % 4 == 3:
                    requests.credit_request_decline(
                        request_id=asked.pk, organization=organization, actor=admin, note=""
                    )
                else:
                    requests.credit_request_approve(
                        request_id=asked.pk, organization=organization, actor=admin
                    )
            except requests.RequestAnswered:
                return "answered already"
            return "answered"

        outcomes = run_threads(8, answer)
        assert outcomes.count("answered") == 1
        asked.refresh_from_db()
        moved = manager_available(managed) - before
        assert moved == (3 if asked.status == "approved" else 0)
    assert ledger_audit().ok


def test_another_organizations_admin_cannot_answer(
    organization, admin, managed, outsider, other_organization
):
    grant(organization, 10)
    asked = ask(managed, 3)
    with pytest.raises(requests.RequestRefused, match="does not exist"):
        requests.credit_request_approve(
            request_id=asked.pk, organization=other_organization, actor=outsider
        )
    client = Client()
    client.force_login(outsider)
    response = client.post(
        reverse("training:credit_request_answer", args=[asked.pk]), {"decision": "approve"}
    )
    assert response.status_code == 404
    asked.refresh_from_db()
    assert asked.status == "pending" and manager_available(managed) == 0


def test_the_pages_ask_list_and_answer_and_odd_input_is_a_form_error(
    organization, admin, admin_client, managed, manager_client
):
    grant(organization, 10)
    course_page = reverse("training:managed_course", args=[managed.pk])
    url = reverse("training:credit_request_create", args=[managed.pk])
    for quantity, note, says in [
        ("0", "", "Ask for at least one credit."),
        (str(2**31), "", "Ask for at most 100,000 credits at a time."),
        ("x", "", "Enter a whole number of credits."),
        ("2", "a\x00b", "Remove the invisible NUL characters"),
        ("2", "n" * 10_000, "at most 1000 characters"),
    ]:
        response = manager_client.post(
            url, {"quantity": quantity, "note": note, "token": uuid.uuid4()}, follow=True
        )
        assert response.status_code == 200 and says in response.content.decode()
    assert not CreditRequest.objects.exists()

    page = manager_client.post(
        url, {"quantity": "4", "note": "For the 💡 team", "token": uuid.uuid4()}, follow=True
    ).content.decode()
    assert "Asked your admins for 4 credits" in page and 'data-testid="request-pending"' in page
    dashboard = admin_client.get(reverse("dashboard")).content.decode()
    assert "asks for <strong>4</strong> credits" in dashboard and "For the 💡 team" in dashboard

    asked = CreditRequest.objects.get()
    answer = reverse("training:credit_request_answer", args=[asked.pk])
    done = admin_client.post(answer, {"decision": "approve", "note": "ok"}, follow=True)
    assert "Approved: 4 credits moved to manager@acme.test" in done.content.decode()
    again = admin_client.post(answer, {"decision": "decline"}, follow=True)
    assert "already approved by admin@acme.test" in again.content.decode()
    assert manager_available(managed) == 4
    assert 'data-testid="credit-request"' not in again.content.decode()
    after = manager_client.get(course_page).content.decode()
    assert "was <strong>approved</strong>" in after and "Ask your admins" in after


def test_a_form_token_used_for_another_course_is_refused_plainly(
    organization, manager, managed, manager_client
):
    other = allocations.manager_register(
        organization=organization, course=LevelFactory().course, user=manager
    )
    token = uuid.uuid4()
    ask(managed, 2, token=token)
    response = manager_client.post(
        reverse("training:credit_request_create", args=[other.pk]),
        {"quantity": "2", "token": token},
        follow=True,
    )
    assert response.status_code == 200
    assert "This form was already used" in response.content.decode()
    assert CreditRequest.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_approving_while_credits_are_assigned_and_taken_back_never_deadlocks(
    organization, admin, managed
):
    grant(organization, 100)
    allocations.course_allocate(
        organization=organization, course=managed.course, quantity=10, actor=admin
    )
    allocations.manager_assign(manager=managed, quantity=5, actor=admin)
    for _ in range(4):
        asked = ask(managed, 2)

        def work(n: int, asked=asked) -> str:
            if n == 0:
                requests.credit_request_approve(
                    request_id=asked.pk, organization=organization, actor=admin
                )
            elif n % 2:
                allocations.manager_take_back(manager=managed, quantity=1, actor=admin)
            else:
                allocations.manager_assign(manager=managed, quantity=1, actor=admin)
            return "ok"

        assert run_threads(6, work) == ["ok"] * 6
    assert ledger_audit().ok
