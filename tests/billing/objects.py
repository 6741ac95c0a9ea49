"""Stripe objects as its events carry them, for purchases made through the real views."""

import uuid

from django.test import Client
from django.urls import reverse

from billing.models import Purchase


def buy(client: Client, quantity: int = 100) -> Purchase:
    """A pending purchase with its (fake) Checkout Session, made as the admin makes one."""
    token = uuid.uuid4()
    client.post(
        reverse("billing:purchase_create"),
        {"quantity": quantity, "request_token": str(token), "next": "/credits/"},
    )
    return Purchase.objects.get(request_token=token)


def payment_intent(purchase: Purchase) -> str:
    return f"pi_test_{purchase.pk}"


def session(purchase: Purchase, **changes) -> dict:
    return {
        "id": purchase.checkout_session_id,
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "status": "complete",
        "client_reference_id": str(purchase.pk),
        "metadata": {"purchase_id": str(purchase.pk)},
        "payment_intent": payment_intent(purchase),
        "invoice": f"in_test_{purchase.pk}",
        **changes,
    }


def charge(purchase: Purchase, *, refunded: int, **changes) -> dict:
    """The purchase's charge as `charge.refunded` carries it: amount_refunded is cumulative."""
    return {
        "id": f"ch_{purchase.pk}",
        "object": "charge",
        "amount": purchase.amount_minor,
        "amount_refunded": refunded,
        "currency": purchase.currency.lower(),
        "refunded": refunded == purchase.amount_minor,
        "payment_intent": payment_intent(purchase),
        **changes,
    }


def dispute(purchase: Purchase, *, status="needs_response", amount=None, suffix="") -> dict:
    return {
        "id": f"dp_{purchase.pk}{suffix}",
        "object": "dispute",
        "amount": purchase.amount_minor if amount is None else amount,
        "currency": purchase.currency.lower(),
        "charge": f"ch_{purchase.pk}",
        "payment_intent": payment_intent(purchase),
        "status": status,
    }
