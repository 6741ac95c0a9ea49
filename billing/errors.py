"""Billing's exceptions, shared by its subdomains (checkout, subscriptions, refunds, overage,
webhooks)."""

from config.errors import Refusal


class PurchaseRefused(Refusal):
    """A purchase, subscription or upgrade that cannot be started; the message is fit to
    show."""


class EventNotApplicable(Exception):
    """A stored Stripe event that cannot be applied as it stands: a metadata key missing, an
    organization or plan that does not exist, an amount in another currency, a payload of
    the wrong shape. The event keeps this message as its error (for support, in the admin)
    and is tried again later: once the cause is fixed, a retry applies it."""
