"""Auto top-up (issue 18, part 1), against Stripe faked at the SDK's HTTP client and its
events signed with the SDK's helper: the card saved in setup mode, one top-up however many
redemptions cross the threshold at once, the credits from the verified webhook once, a
declined or authentication-needing card pausing it with one email, the monthly cap, and a
refund taking the credits back."""

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
