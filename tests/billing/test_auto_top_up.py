"""Auto top-up (issue 18, part 1), against Stripe faked at the SDK's HTTP client and its
events signed with the SDK's helper: the card saved in setup mode, one top-up however many
redemptions cross the threshold at once, the credits from the verified webhook once, a
declined or authentication-needing card pausing it with one email, the monthly cap, and a
refund taking the credits back."""

import uuid

import pytest
from django.test import TestCase
from django.urls import reverse

from accounts.models import Membership
from billing import autotopup
from billing.models import AutoTopUp, Purchase
from credits import selectors, services
from credits.audit import ledger_audit
from credits.models import Lot
from tests.accounts.factories import member
from tests.billing.delivery import deliver
from tests.billing.objects import charge
from tests.credits.factories import grant, key
from tests.support.threads import run_threads

pytestmark = pytest.mark.django_db


def available(organization) -> int:
    return selectors.organization_balance(organization=organization).available


def redeem(organization, quantity=1):
    """A redemption, and what runs once it commits (the auto top-up check, the charge)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.credits_redeem(
            account=services.pool_account(organization=organization),
            quantity=quantity,
            reference="r",
            idempotency_key=key("r"),
        )


def set_up(admin_client, events, fake_stripe, *, card="pm_card_visa", threshold=20, quantity=50,
           cap=200):  # fmt: skip
    """The admin's form, Checkout in setup mode, and Stripe's checkout.session.completed."""
    response = admin_client.post(
        reverse("billing:auto_top_up"),
        {"action": "card", "threshold": threshold, "quantity": quantity, "monthly_cap": cap},
    )
    (setup,) = [c for c in fake_stripe.calls_to("/v1/checkout/sessions")]
    assert setup.params["mode"] == "setup"
    session_id = fake_stripe.sessions and list(fake_stripe.sessions)[-1]
    assert response["Location"] == fake_stripe.sessions[session_id]["url"]
    fake_stripe.setup_intents["seti_1"] = card
    deliver(
        events,
        "checkout.session.completed",
        {
            "id": session_id,
            "object": "checkout.session",
            "mode": "setup",
            "status": "complete",
            "setup_intent": "seti_1",
            "metadata": {"auto_top_up": "1"},
        },
    )
    return AutoTopUp.objects.get()


def pay(events, purchase: Purchase, *, event_id=None):
    return deliver(
        events,
        "payment_intent.succeeded",
        {
            "id": f"pi_test_{purchase.pk}",
            "object": "payment_intent",
            "amount": purchase.amount_minor,
            "amount_received": purchase.amount_minor,
            "currency": purchase.currency.lower(),
            "status": "succeeded",
            "metadata": {"purchase_id": str(purchase.pk), "auto_top_up": "1"},
        },
        event_id=event_id,
    )


def test_setting_up_saves_the_card_and_a_low_pool_buys_at_the_volume_price_once(
    prices, organization, admin_client, events, fake_stripe
):
    grant(organization, 25)
    auto = set_up(admin_client, events, fake_stripe)
    assert (auto.status, auto.payment_method_id) == ("active", "pm_card_visa")
    assert not Purchase.objects.exists()  # 25 available: not below 20
    redeem(organization, 6)
    (purchase,) = Purchase.objects.filter(automatic=True)
    (intent,) = fake_stripe.calls_to("/v1/payment_intents")
    assert intent.params["off_session"] == "true" and intent.params["confirm"] == "true"
    assert intent.params["payment_method"] == "pm_card_visa"
    assert int(intent.params["amount"]) == purchase.amount_minor and purchase.quantity == 50
    assert intent.idempotency_key == f"purchase:{purchase.pk}:off-session"
    assert available(organization) == 19  # nothing granted before Stripe says it is paid
    for _ in range(2):  # the event duplicated
        pay(events, purchase, event_id="evt_topup_paid")
    pay(events, purchase)  # and redelivered under a new id
    purchase.refresh_from_db()
    assert purchase.status == "paid" and available(organization) == 69
    assert Lot.objects.filter(reference=f"pi_test_{purchase.pk}").count() == 1
    # Paid and above the threshold: nothing more starts.
    redeem(organization, 1)
    assert Purchase.objects.filter(automatic=True).count() == 1
    assert ledger_audit().ok


@pytest.mark.django_db(transaction=True)
def test_32_redemptions_crossing_the_threshold_at_once_start_one_top_up(
    prices, organization, admin, admin_client, events, fake_stripe
):
    grant(organization, 52)
    set_up(admin_client, events, fake_stripe, threshold=40)

    def spend(n: int) -> None:
        redeem(organization, 1)

    run_threads(32, spend)
    assert available(organization) == 20
    assert Purchase.objects.filter(automatic=True).count() == 1
    assert len(fake_stripe.calls_to("/v1/payment_intents")) == 1
    assert not any(fake_stripe.in_transaction[-1:])  # the charge held no transaction open
    assert ledger_audit().ok


@pytest.mark.parametrize(
    "outcome, says",
    [("card_declined", "the card was declined"), ("authentication_required", "authentication")],
)
def test_a_failing_card_pauses_auto_top_up_emails_once_and_buys_nothing(
    prices, organization, admin, admin_client, events, fake_stripe, mailoutbox,
    django_capture_on_commit_callbacks, outcome, says,
):  # fmt: skip
    second = member(organization, Membership.Role.ADMIN, email="second@acme.test")
    grant(organization, 21)
    fake_stripe.card_outcomes["pm_card_bad"] = outcome
    set_up(admin_client, events, fake_stripe, card="pm_card_bad")
    with django_capture_on_commit_callbacks(execute=True):  # and the emails it writes
        redeem(organization, 2)
    (purchase,) = Purchase.objects.filter(automatic=True)
    assert purchase.status == "failed"
    auto = AutoTopUp.objects.get()
    assert auto.status == "paused" and says in auto.paused_reason
    with django_capture_on_commit_callbacks(execute=True):
        redeem(organization, 2)  # paused: no second attempt, no second email
    assert Purchase.objects.filter(automatic=True).count() == 1
    assert len(fake_stripe.calls_to("/v1/payment_intents")) == 1
    assert sorted(m.to[0] for m in mailoutbox) == sorted([admin.email, second.email])
    assert "Auto top-up paused" in mailoutbox[0].subject and says in mailoutbox[0].body
    assert available(organization) == 17
    dashboard = admin_client.get(reverse("dashboard")).content.decode()
    assert 'data-testid="auto-top-up-paused-banner"' in dashboard
    billing = admin_client.get(reverse("billing:overview")).content.decode()
    assert 'data-testid="auto-top-up-paused"' in billing


def test_the_monthly_cap_bounds_what_auto_top_up_buys(
    prices, organization, admin_client, events, fake_stripe
):
    grant(organization, 21)
    set_up(admin_client, events, fake_stripe, threshold=20, quantity=50, cap=99)
    redeem(organization, 2)
    (first,) = Purchase.objects.filter(automatic=True)
    pay(events, first)
    redeem(organization, 60)  # below the threshold again, but a second 50 exceeds the cap
    assert Purchase.objects.filter(automatic=True).count() == 1
    assert autotopup.bought_this_month(organization=organization) == 50


def test_a_refunded_top_up_takes_its_credits_back_and_a_wrong_amount_grants_nothing(
    prices, organization, admin_client, events, fake_stripe
):
    grant(organization, 21)
    set_up(admin_client, events, fake_stripe)
    redeem(organization, 2)
    (purchase,) = Purchase.objects.filter(automatic=True)
    wrong = deliver(
        events,
        "payment_intent.succeeded",
        {
            "id": f"pi_test_{purchase.pk}",
            "object": "payment_intent",
            "amount": 1,
            "amount_received": 1,
            "currency": purchase.currency.lower(),
            "metadata": {"purchase_id": str(purchase.pk), "auto_top_up": "1"},
        },
    )
    assert wrong.status_code == 200 and available(organization) == 19
    pay(events, purchase)
    assert available(organization) == 69
    deliver(events, "charge.refunded", charge(purchase, refunded=purchase.amount_minor))
    assert available(organization) == 19
    assert ledger_audit().ok


def test_odd_settings_are_refused_plainly_and_turning_off_stops_it(
    prices, organization, admin_client, events, fake_stripe
):
    url = reverse("billing:auto_top_up")
    for fields, says in [
        ({"quantity": 2**31}, "Buy at most 100,000 credits at a time."),
        ({"threshold": 0}, "The threshold must be at least one credit."),
        ({"quantity": 60, "monthly_cap": 50}, "The monthly cap must allow at least one top-up."),
        ({"threshold": "x"}, "Enter a whole number."),
    ]:
        form = {"action": "card", "threshold": 10, "quantity": 20, "monthly_cap": 100, **fields}
        page = admin_client.post(url, form, follow=True).content.decode()
        assert says in page
    assert not AutoTopUp.objects.exists()
    grant(organization, 30)
    set_up(admin_client, events, fake_stripe)
    admin_client.post(url, {"action": "off"})
    redeem(organization, 15)
    assert not Purchase.objects.filter(automatic=True).exists()
    assert AutoTopUp.objects.get().status == "off"


# --- What an adversarial review found ------------------------------------------------------


def test_a_refund_parked_before_the_payment_is_applied_even_if_reconciling_failed_once(
    prices, organization, admin_client, events, fake_stripe, monkeypatch
):
    from billing import refunds

    grant(organization, 21)
    set_up(admin_client, events, fake_stripe)
    redeem(organization, 2)
    (purchase,) = Purchase.objects.filter(automatic=True)
    purchase.payment_intent_id = f"pi_test_{purchase.pk}"  # as the charge task recorded it
    deliver(events, "charge.refunded", charge(purchase, refunded=purchase.amount_minor))
    real, calls = refunds.payment_reconcile, []

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return real(**kwargs)

    monkeypatch.setattr(refunds, "payment_reconcile", flaky)
    pay(events, purchase, event_id="evt_paid")  # its processing fails after the grant
    assert available(organization) == 69  # granted, the refund not applied yet
    pay(events, purchase, event_id="evt_paid_again")  # Stripe's (or the task's) retry
    assert available(organization) == 19
    assert ledger_audit().ok


def test_turning_off_cancels_a_queued_top_up_and_a_late_setup_event_keeps_it_off(
    prices, organization, admin_client, events, fake_stripe, django_capture_on_commit_callbacks
):
    grant(organization, 21)
    set_up(admin_client, events, fake_stripe)
    session_id = AutoTopUp.objects.get().setup_session_id
    with django_capture_on_commit_callbacks(execute=False) as queued:
        services.credits_redeem(
            account=services.pool_account(organization=organization),
            quantity=2,
            reference="r",
            idempotency_key=key(),
        )
    for callback in queued:  # the check writes the purchase; its charge is queued, not run
        with django_capture_on_commit_callbacks(execute=False):
            callback()
    (purchase,) = Purchase.objects.filter(automatic=True)
    admin_client.post(reverse("billing:auto_top_up"), {"action": "off"})
    assert autotopup.auto_top_up_charge(purchase_id=purchase.pk) == "nothing to charge"
    purchase.refresh_from_db()
    assert purchase.status == "cancelled"
    assert not fake_stripe.calls_to("/v1/payment_intents")
    fake_stripe.setup_intents["seti_1"] = "pm_card_visa"
    late = {"id": session_id, "object": "checkout.session", "mode": "setup",
            "setup_intent": "seti_1", "metadata": {"auto_top_up": "1"}}  # fmt: skip
    assert deliver(events, "checkout.session.completed", late).status_code == 200
    assert AutoTopUp.objects.get().status == "off"
    from billing.models import StripeEvent

    assert not StripeEvent.objects.filter(status="failed").exists()


def test_a_top_up_stuck_before_its_charge_is_charged_by_beat_or_given_up(
    prices, organization, admin, admin_client, events, fake_stripe, mailoutbox,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    import datetime as dt

    from django.utils import timezone

    grant(organization, 21)
    set_up(admin_client, events, fake_stripe)
    # Stripe is down for longer than the task's own retries (and the SDK's).
    fake_stripe.server_error_next["/v1/payment_intents"] = 10_000
    redeem(organization, 2)
    (purchase,) = Purchase.objects.filter(automatic=True)
    assert purchase.status == "pending" and not purchase.payment_intent_id
    assert AutoTopUp.objects.get().status == "active"  # not the card's fault: not paused
    fake_stripe.server_error_next.clear()
    later = timezone.now() + autotopup.REQUEUE_AFTER + dt.timedelta(minutes=1)
    autotopup.auto_top_ups_check(now=later)  # queued again: charged this time
    purchase.refresh_from_db()
    assert purchase.payment_intent_id == f"pi_test_{purchase.pk}"
    assert {c.idempotency_key for c in fake_stripe.calls_to("/v1/payment_intents")} == {
        f"purchase:{purchase.pk}:off-session"
    }  # every attempt the same charge

    # Another one stuck for hours is given up: failed, paused, the admins told.
    Purchase.objects.filter(pk=purchase.pk).update(status="paid")
    stuck = Purchase.objects.create(
        organization=organization, created_by=admin, request_token=uuid.uuid4(), quantity=50,
        amount_minor=purchase.amount_minor, currency=purchase.currency, automatic=True,
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        autotopup.auto_top_ups_check(now=timezone.now() + autotopup.GIVE_UP)
    stuck.refresh_from_db()
    assert stuck.status == "failed" and AutoTopUp.objects.get().status == "paused"
    assert [m.subject for m in mailoutbox].count(f"Auto top-up paused for {organization.name}") == 1


def test_an_old_cards_failure_does_not_pause_the_new_card(
    prices, organization, admin_client, events, fake_stripe
):
    grant(organization, 21)
    set_up(admin_client, events, fake_stripe, card="pm_old")
    redeem(organization, 2)
    (purchase,) = Purchase.objects.filter(automatic=True)
    assert purchase.charged_card == "pm_old"
    AutoTopUp.objects.update(payment_method_id="pm_new")  # a new card saved meanwhile
    deliver(
        events,
        "payment_intent.payment_failed",
        {
            "id": f"pi_test_{purchase.pk}",
            "object": "payment_intent",
            "metadata": {"purchase_id": str(purchase.pk), "auto_top_up": "1"},
            "last_payment_error": {"code": "card_declined", "message": "declined"},
        },
    )
    assert AutoTopUp.objects.get().status == "active"


def test_quantities_a_price_list_cannot_charge_and_long_session_ids_are_refused_plainly(
    prices, organization, admin_client, settings
):
    from billing import pricing

    most = pricing.max_quantity(price_list=pricing.price_list_for(organization.currency))
    if most < 100_000:
        page = admin_client.post(
            reverse("billing:auto_top_up"),
            {"action": "card", "threshold": 5, "quantity": most + 1, "monthly_cap": 10**7},
            follow=True,
        )
        assert page.status_code == 200 and "at once" in page.content.decode().lower()
    settings.DEBUG, settings.STRIPE_SECRET_KEY = True, ""
    long_id = "cs_sim_setup_" + "9" * 5000 + "_" + "a" * 32
    assert admin_client.get(reverse("billing:simulated_setup", args=[long_id])).status_code == 404


def test_one_organizations_error_does_not_stop_beat_for_the_others(
    prices, organization, other_organization, admin, outsider, admin_client, events,
    fake_stripe, monkeypatch,
):  # fmt: skip
    for org, user in ((organization, admin), (other_organization, outsider)):
        grant(org, 5)
        AutoTopUp.objects.create(
            organization=org, status="active", threshold=10, quantity=20, monthly_cap=100,
            configured_by=user, payment_method_id="pm_card_visa",
        )  # fmt: skip
    real = autotopup.auto_top_up_check

    def broken_for_the_first(*, organization_id):
        if organization_id == organization.pk:
            raise RuntimeError("boom")
        return real(organization_id=organization_id)

    monkeypatch.setattr(autotopup, "auto_top_up_check", broken_for_the_first)
    autotopup.auto_top_ups_check()
    assert Purchase.objects.filter(organization=other_organization, automatic=True).count() == 1
