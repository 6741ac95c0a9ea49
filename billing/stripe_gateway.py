"""Everything that talks to Stripe, and the simulated checkout that stands in for it offline.

`stripe_client()` is the one place a StripeClient is built. No caller holds a database
lock (or an open transaction) while one of these functions waits on the network: the
local intent is committed first and the result recorded in a second, short transaction.

With no STRIPE_SECRET_KEY and DEBUG on, checkout goes to a local page clearly marked as
simulated (billing/simulated.py), whose "Pay" posts correctly signed events to the real
webhook endpoint, so the very same fulfilment code runs. That page refuses to exist with a
real key or with DEBUG off.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import stripe
from django.conf import settings
from django.urls import reverse

from accounts.models import Organization
from config.errors import Refusal

from .models import AutoTopUp, Purchase, StripeCustomer, Subscription, SubscriptionPlan


class PaymentsUnavailable(Refusal):
    def __init__(self) -> None:
        super().__init__(
            "Online payment is not set up for this site yet. Please contact support to buy credits."
        )


def simulated() -> bool:
    return not settings.STRIPE_SECRET_KEY and settings.DEBUG


def payments_available() -> bool:
    """Whether a checkout can be opened at all: asked before any row is written."""
    return bool(settings.STRIPE_SECRET_KEY) or simulated()


def webhook_secret() -> str:
    if settings.STRIPE_WEBHOOK_SECRET:
        return settings.STRIPE_WEBHOOK_SECRET
    return simulated_webhook_secret() if simulated() else ""


def simulated_secret_path() -> Path:
    return Path(
        getattr(settings, "SIMULATED_WEBHOOK_SECRET_FILE", "")
        or Path(settings.BASE_DIR) / ".local" / "simulated-webhook-secret"
    )


def simulated_webhook_secret() -> str:
    """The secret the simulated checkout signs its events with: random, one per install,
    made on first use in `.local/` (git-ignored, readable by its owner only). A constant
    known to everyone would let anyone who can reach a DEBUG server post "paid" events."""
    path = simulated_secret_path()
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written in full to a private temporary file, then linked into place: a process racing
    # this one never reads a half-written secret, and the first link wins.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(f"whsec_sim_{secrets.token_urlsafe(32)}\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_text().strip()


def stripe_client() -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        raise PaymentsUnavailable
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None,
        http_client=settings.STRIPE_HTTP_CLIENT,
        max_network_retries=2,
    )


def customer_id_for(organization: Organization) -> str:
    """The organization's Stripe customer, created once (Stripe's idempotency key covers a
    retry; the unique row covers two requests at once)."""
    existing = StripeCustomer.objects.filter(organization=organization).first()
    if existing:
        return existing.customer_id
    customer = stripe_client().v1.customers.create(
        params={"name": organization.name, "metadata": {"organization_id": str(organization.pk)}},
        options={"idempotency_key": f"customer:{organization.pk}"},
    )
    record, _ = StripeCustomer.objects.get_or_create(
        organization=organization, defaults={"customer_id": customer.id}
    )
    return record.customer_id


def checkout_session_create(purchase: Purchase) -> tuple[str, str]:
    """(session id, address to send the admin to) for a pending purchase."""
    success = settings.SITE_URL + reverse("billing:purchase", args=[purchase.pk])
    cancel = settings.SITE_URL + reverse("billing:add_credits")
    if simulated():
        session_id = f"cs_sim_{purchase.pk}_{purchase.request_token.hex}"
        return session_id, reverse("billing:simulated_checkout", args=[session_id])
    session = stripe_client().v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "customer": customer_id_for(purchase.organization),
            "client_reference_id": str(purchase.pk),
            "metadata": {
                "organization_id": str(purchase.organization_id),
                "purchase_id": str(purchase.pk),
            },
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": purchase.currency.lower(),
                        "unit_amount": purchase.amount_minor,
                        "product_data": {"name": f"{purchase.quantity:,} training credits"},
                    },
                }
            ],
            "invoice_creation": {"enabled": True},
            "success_url": success + "?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": cancel,
        },
        options={"idempotency_key": f"purchase:{purchase.pk}:checkout"},
    )
    return session.id, session.url


def checkout_session_retrieve(session_id: str) -> dict:
    return stripe_client().v1.checkout.sessions.retrieve(session_id).to_dict()


def subscription_checkout_create(
    organization: Organization, plan: SubscriptionPlan, request_token: str
) -> str:
    """The address where the admin subscribes to `plan`."""
    if simulated():
        return reverse("billing:simulated_checkout", args=[f"cs_sim_sub_{plan.pk}_{request_token}"])
    if not plan.stripe_price_id:
        raise PaymentsUnavailable
    metadata = {"organization_id": str(organization.pk), "plan_id": str(plan.pk)}
    session = stripe_client().v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer_id_for(organization),
            "client_reference_id": str(organization.pk),
            "line_items": [{"price": plan.stripe_price_id, "quantity": 1}],
            "metadata": metadata,
            # Copied by Stripe onto every invoice, so a paid period always names its plan.
            "subscription_data": {"metadata": metadata},
            "success_url": settings.SITE_URL + reverse("billing:overview"),
            "cancel_url": settings.SITE_URL + reverse("billing:overview"),
        },
        options={"idempotency_key": f"subscribe:{organization.pk}:{request_token}"},
    )
    return session.url


def subscription_retrieve(subscription_id: str) -> dict:
    return stripe_client().v1.subscriptions.retrieve(subscription_id).to_dict()


def subscription_change_plan(
    subscription: Subscription, plan: SubscriptionPlan, *, request_key: str
) -> None:
    """Ask Stripe to move the subscription's item to `plan`'s price, invoicing the
    proration now. `pending_if_incomplete`: nothing changes until that invoice is paid (the
    new price, and our credits, arrive with `invoice.paid`); if it is not paid, Stripe drops
    the update. Pending updates take no metadata: the plan of later invoices is read from
    their lines' price, not from the subscription's metadata.

    `request_key` names this one change (from plan, to plan, and a value new with each claim,
    subscriptions.subscription_upgrade): Stripe's retries of it are one request, and any
    other change, even to the same plan, is a new one."""
    if simulated():
        return
    if not plan.stripe_price_id or not subscription.stripe_item_id:
        raise PaymentsUnavailable
    stripe_client().v1.subscriptions.update(
        subscription.stripe_subscription_id,
        params={
            "items": [{"id": subscription.stripe_item_id, "price": plan.stripe_price_id}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
        },
        options={"idempotency_key": f"subscription:{subscription.pk}:change:{request_key}"},
    )


def _state(subscription: Subscription) -> int:
    """Which state of the subscription a request starts from (its newest applied event).
    In the key, so a double click or a retry is one request, while the same change asked
    again after the subscription moved on (a downgrade or renewal in the customer portal)
    is a new one — Stripe would otherwise replay the first answer for 24 hours."""
    stamp = subscription.state_as_of
    return int(stamp.timestamp()) if stamp else 0


def subscription_cancel_at_period_end(subscription: Subscription) -> None:
    if simulated():
        return
    stripe_client().v1.subscriptions.update(
        subscription.stripe_subscription_id,
        params={"cancel_at_period_end": True},
        options={
            "idempotency_key": f"subscription:{subscription.pk}:cancel:{_state(subscription)}"
        },
    )


def customer_portal_url(organization: Organization) -> str:
    portal = stripe_client().v1.billing_portal.sessions.create(
        params={
            "customer": customer_id_for(organization),
            "return_url": settings.SITE_URL + reverse("billing:overview"),
        }
    )
    return portal.url


def overage_invoice_create(
    organization: Organization,
    *,
    quantity: int,
    amount_minor: int,
    currency: str,
    month: str,
    description: str,
) -> str:
    """One invoice for a month's overage, charged automatically; returns its id."""
    if simulated():
        return f"in_sim_overage_{organization.pk}_{month}"
    client = stripe_client()
    customer = customer_id_for(organization)
    key = f"overage:{organization.pk}:{month}"
    # The invoice first, then its line attached to it: a loose invoice item left behind by a
    # failed or lost second call would ride along on the customer's next subscription
    # invoice and be billed twice.
    invoice = client.v1.invoices.create(
        params={
            "customer": customer,
            "collection_method": "charge_automatically",
            "pending_invoice_items_behavior": "exclude",
            "auto_advance": True,
            "metadata": {"organization_id": str(organization.pk), "overage_month": month},
        },
        options={"idempotency_key": f"{key}:invoice"},
    )
    client.v1.invoice_items.create(
        params={
            "customer": customer,
            "invoice": invoice.id,
            "amount": amount_minor,
            "currency": currency.lower(),
            "description": description,
        },
        options={"idempotency_key": f"{key}:item"},
    )
    return invoice.id


def invoice_hosted_url(invoice_id: str) -> str:
    """The Stripe-hosted page of an invoice, or "" if there is none (or Stripe is away: the
    invoice stays reachable through the customer portal)."""
    if not invoice_id or simulated():
        return ""
    try:
        return stripe_client().v1.invoices.retrieve(invoice_id).hosted_invoice_url or ""
    except stripe.StripeError:
        return ""


# --- Auto top-up: a card saved in setup mode, then off-session charges -------------------


def setup_session_create(auto: AutoTopUp, token: str) -> tuple[str, str]:
    """(session id, address to send the admin to) for saving the auto top-up's card."""
    success = settings.SITE_URL + reverse("billing:overview") + "?auto_top_up=saved"
    cancel = settings.SITE_URL + reverse("billing:overview")
    if simulated():
        session_id = f"cs_sim_setup_{auto.organization_id}_{token}"
        return session_id, reverse("billing:simulated_setup", args=[session_id])
    session = stripe_client().v1.checkout.sessions.create(
        params={
            "mode": "setup",
            "currency": auto.organization.currency.lower(),
            "customer": customer_id_for(auto.organization),
            "metadata": {"organization_id": str(auto.organization_id), "auto_top_up": "1"},
            "success_url": success,
            "cancel_url": cancel,
        },
        options={"idempotency_key": f"auto-top-up:{auto.organization_id}:setup:{token}"},
    )
    return session.id, session.url


def setup_intent_payment_method(setup_intent_id: str) -> str:
    intent = stripe_client().v1.setup_intents.retrieve(setup_intent_id).to_dict()
    method = intent.get("payment_method")
    return method if isinstance(method, str) else (method or {}).get("id", "")


@dataclass(frozen=True)
class ChargeOutcome:
    """What Stripe answered an off-session charge: `status` "succeeded" or "processing"
    (the credits come with payment_intent.succeeded), or `declined` / `authentication`
    with Stripe's message."""

    status: str
    payment_intent_id: str = ""
    message: str = ""


def off_session_charge(purchase: Purchase, payment_method_id: str) -> ChargeOutcome:
    """Charge the saved card for an auto top-up, without the customer. Keyed by the
    purchase, so a retried task charges once."""
    if simulated():
        return _simulated_charge(purchase, payment_method_id)
    try:
        intent = stripe_client().v1.payment_intents.create(
            params={
                "amount": purchase.amount_minor,
                "currency": purchase.currency.lower(),
                "customer": customer_id_for(purchase.organization),
                "payment_method": payment_method_id,
                "off_session": True,
                "confirm": True,
                "description": f"{purchase.quantity:,} training credits (auto top-up)",
                "metadata": {
                    "organization_id": str(purchase.organization_id),
                    "purchase_id": str(purchase.pk),
                    "auto_top_up": "1",
                },
            },
            options={"idempotency_key": f"purchase:{purchase.pk}:off-session"},
        )
    except stripe.CardError as error:
        intent = error.error.payment_intent if error.error else None
        kind = "authentication" if error.code == "authentication_required" else "declined"
        return ChargeOutcome(kind, getattr(intent, "id", "") or "", error.user_message or "")
    except stripe.InvalidRequestError as error:
        # Not a passing failure: the saved card was removed, the customer deleted...
        return ChargeOutcome("refused", "", error.user_message or str(error)[:200])
    return ChargeOutcome(intent.status, intent.id)


SIMULATED_CARDS = {
    "pm_sim_ok": "A card that pays",
    "pm_sim_declined": "A card that is declined",
    "pm_sim_authentication": "A card that asks the customer to authenticate",
}


def _simulated_charge(purchase: Purchase, payment_method_id: str) -> ChargeOutcome:
    """The simulated card's outcome. One that pays has Stripe's payment_intent.succeeded
    event stored as if it came through the webhook, so the same fulfilment runs."""
    intent_id = f"pi_sim_{purchase.pk}"
    if payment_method_id == "pm_sim_declined":
        return ChargeOutcome("declined", intent_id, "Your card was declined.")
    if payment_method_id == "pm_sim_authentication":
        return ChargeOutcome(
            "authentication", intent_id, "This payment needs the cardholder to authenticate."
        )
    return ChargeOutcome("succeeded", intent_id)
