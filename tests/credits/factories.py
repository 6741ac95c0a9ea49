"""Credits enter tests the way they enter production: through credits/services.py."""

import datetime as dt
import itertools

from django.utils import timezone

from credits import services

_keys = itertools.count()


def key(prefix: str = "test") -> str:
    return f"{prefix}-{next(_keys)}"


def grant(organization, quantity: int, *, days_ago: int = 0, expires_at=None, **kwargs):
    return services.lot_grant(
        organization=organization,
        quantity=quantity,
        source=kwargs.pop("source", "purchase"),
        invoice_date=timezone.now() - dt.timedelta(days=days_ago),
        reference=kwargs.pop("reference", ""),
        idempotency_key=kwargs.pop("idempotency_key", key("grant")),
        expires_at=expires_at,
        **kwargs,
    )


def redeem(account, quantity: int, **kwargs):
    return services.credits_redeem(
        account=account,
        quantity=quantity,
        reference=kwargs.pop("reference", "test"),
        idempotency_key=kwargs.pop("idempotency_key", key("redeem")),
        **kwargs,
    )


def hold(account, quantity: int, **kwargs):
    return services.hold_place(
        account=account,
        quantity=quantity,
        reference=kwargs.pop("reference", "test"),
        idempotency_key=kwargs.pop("idempotency_key", key("hold")),
        **kwargs,
    )
