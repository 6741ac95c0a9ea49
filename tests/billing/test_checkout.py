import json
import os
import stat
import uuid

import pytest
import stripe
from django.test import Client
from django.urls import reverse

from billing import stripe_gateway
from billing.models import CreditPackage, Purchase, StripeEvent
from tests.billing.factories import PurchaseFactory

pytestmark = pytest.mark.django_db

NEW = reverse("billing:purchase_create")


def test_add_credits_shows_packages_quote_suggestion_and_terms(admin_client, prices):
    page = admin_client.get(
        reverse("billing:add_credits"), {"need": 9200, "next": "/credits/"}
    ).content.decode()
    assert "Buy the 9,356-credit package" in page
    assert "All sales are final" in page and "365 days after its invoice date" in page
    assert 'value="9200"' in page
    assert 'name="next" value="/credits/"' in page


def test_live_quote_is_an_htmx_partial(admin_client, prices):
    response = admin_client.get(
        reverse("billing:add_credits"),
        {"quantity": 2600},
        headers={"HX-Request": "true", "HX-Target": "quote"},
    )
    body = response.content.decode()
    assert "<h1>" not in body
    assert "2,600 credits at $9.50 each (5% off): <strong>$24,700.00</strong>" in body


def test_only_local_paths_are_kept_as_next(admin_client, prices):
    page = admin_client.get(
        reverse("billing:add_credits"), {"next": "https://evil.example/"}
    ).content.decode()
    assert "evil.example" not in page


def test_buying_creates_a_checkout_session_with_the_quote(admin_client, admin, prices, fake_stripe):
    token = str(uuid.uuid4())
    response = admin_client.post(
        NEW, {"quantity": 2600, "request_token": token, "next": "/credits/"}
    )
    purchase = Purchase.objects.get()
    assert response["Location"] == purchase.checkout_url
    assert purchase.status == "pending"
    assert (purchase.quantity, purchase.amount_minor) == (2600, 2_470_000)

    customer = fake_stripe.calls_to("/v1/customers")[0]
    assert customer.idempotency_key == f"customer:{purchase.organization_id}"
    session = fake_stripe.calls_to("/v1/checkout/sessions")[0]
    assert session.idempotency_key == f"purchase:{purchase.pk}:checkout"
    assert session.params == {
        "mode": "payment",
        "customer": customer_id(purchase),
        "client_reference_id": str(purchase.pk),
        "metadata[organization_id]": str(purchase.organization_id),
        "metadata[purchase_id]": str(purchase.pk),
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "2470000",
        "line_items[0][price_data][product_data][name]": "2,600 training credits",
        "invoice_creation[enabled]": "true",
        "success_url": f"https://credits.example.com/billing/purchases/{purchase.pk}/"
        "?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://credits.example.com/billing/add-credits/",
    }


def customer_id(purchase):
    return purchase.organization.stripe_customer.customer_id


def test_a_double_click_is_one_purchase_and_one_session(admin_client, prices, fake_stripe):
    package = CreditPackage.objects.get(credits=9_356)
    form = {"package": package.pk, "request_token": str(uuid.uuid4())}
    first = admin_client.post(NEW, form)
    second = admin_client.post(NEW, form)
    assert first["Location"] == second["Location"]
    assert Purchase.objects.count() == 1
    assert len(fake_stripe.calls_to("/v1/checkout/sessions")) == 1
    assert len(fake_stripe.calls_to("/v1/customers")) == 1


def test_without_stripe_in_production_the_admin_is_told(admin_client, prices, settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.DEBUG = False
    response = admin_client.post(
        NEW, {"quantity": 10, "request_token": str(uuid.uuid4())}, follow=True
    )
    assert b"Online payment is not set up" in response.content
    assert not Purchase.objects.exists()


@pytest.mark.parametrize("quantity", ["", "0", "-3", "abc", "2000000"])
def test_bad_quantities_are_refused_with_a_message(admin_client, prices, fake_stripe, quantity):
    response = admin_client.post(
        NEW, {"quantity": quantity, "request_token": str(uuid.uuid4())}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("billing:add_credits")
    assert b"message-error" in response.content
    assert not Purchase.objects.exists()


def test_managers_and_learners_cannot_buy(manager_client, learner_client, prices):
    for client in (manager_client, learner_client):
        assert client.get(reverse("billing:add_credits")).status_code == 403
        assert client.post(NEW, {"quantity": 5}).status_code == 403


@pytest.mark.parametrize(
    ("debug", "key"), [(False, ""), (True, "sk_test_real"), (False, "sk_test_real")]
)
def test_the_simulated_checkout_exists_only_with_debug_and_no_key(
    admin_client, admin, organization, settings, debug, key
):
    purchase = PurchaseFactory(organization=organization, created_by=admin)
    settings.DEBUG, settings.STRIPE_SECRET_KEY = debug, key
    url = reverse("billing:simulated_checkout", args=[purchase.checkout_session_id])
    assert admin_client.get(url).status_code == 404
    assert admin_client.post(url, {"action": "pay"}).status_code == 404
    purchase.refresh_from_db()
    assert purchase.status == "pending"


@pytest.fixture
def simulated(settings):
    settings.DEBUG, settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = True, "", ""


def test_the_simulated_checkout_signs_with_a_random_secret_of_this_install(
    simulated, settings, tmp_path
):
    secret = stripe_gateway.webhook_secret()
    path = settings.SIMULATED_WEBHOOK_SECRET_FILE
    assert secret.startswith("whsec_sim_") and len(secret) > 40
    assert path.read_text().strip() == secret
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stripe_gateway.webhook_secret() == secret  # made once, then kept
    settings.SIMULATED_WEBHOOK_SECRET_FILE = tmp_path / "another" / "install"
    assert stripe_gateway.webhook_secret() not in (secret, "")


def test_an_event_signed_with_the_old_public_secret_is_refused(simulated):
    payload = json.dumps({"id": "evt_1", "type": "checkout.session.completed"})
    header = stripe.WebhookSignature.generate_signature_header(
        payload, "whsec_simulated_offline_checkout"
    )
    response = Client().post(
        reverse("billing:stripe_webhook"),
        payload,
        content_type="application/json",
        headers={"Stripe-Signature": header},
    )
    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize(
    "session_id",
    ["x", "cs_sim_", "cs_sim_sub_", "cs_sim_sub_1", "cs_sim_sub_1_abc", "cs_sim_" + "a" * 300,
     "cs_sim_a.b", "cs_sim_sub_99999999999999999999_" + "0" * 32, "cs_sim_nope"],
)  # fmt: skip
def test_a_malformed_or_unknown_simulated_session_is_a_404(admin_client, simulated, session_id):
    url = reverse("billing:simulated_checkout", args=[session_id])
    assert admin_client.get(url).status_code == 404
    assert admin_client.post(url, {"action": "pay"}).status_code == 404
