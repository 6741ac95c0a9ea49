"""Stripe's servers are out of reach: this fake stands at the HTTP client the SDK takes, so
everything above it (the SDK's encoding, headers, idempotency keys) is real."""

import itertools
import json
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import stripe
from django.db import connection

# Stripe's largest single charge in USD-like currencies; above it Stripe answers 400.
MAX_AMOUNT_MINOR = 99_999_999


@dataclass
class Call:
    method: str
    path: str
    headers: dict
    params: dict

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("Idempotency-Key")


class FakeStripe(stripe.HTTPClient):
    name = "fake"

    def __init__(self):
        super().__init__()
        self.calls: list[Call] = []
        self.sessions: dict[str, dict] = {}
        # Subscriptions as Stripe holds them: an update changes the item's price in place.
        self.subscriptions: dict[str, dict] = {}
        # Whether the caller had a database transaction open at each request: in a
        # `transaction=True` test any True is a network call made under a lock.
        self.in_transaction: list[bool] = []
        # path -> how many requests to it Stripe refuses next (400: the SDK does not retry).
        self.refuse_next: dict[str, int] = {}
        self._ids = itertools.count(1)

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        parts = urlsplit(url)
        params = dict(parse_qsl(post_data or parts.query or ""))
        call = Call(method.upper(), parts.path, dict(headers or {}), params)
        self.calls.append(call)
        self.in_transaction.append(connection.in_atomic_block)
        status, body = self._refusal(call) or (200, self._answer(call))
        return json.dumps(body), status, {"Request-Id": f"req_{next(self._ids)}"}

    def _refusal(self, call: Call) -> tuple[int, dict] | None:
        if self.refuse_next.get(call.path):
            self.refuse_next[call.path] -= 1
            return 400, {"error": {"type": "invalid_request_error", "message": "refused"}}
        for param in ("line_items[0][price_data][unit_amount]", "amount"):
            if int(call.params.get(param) or 0) > MAX_AMOUNT_MINOR:
                error = {
                    "type": "invalid_request_error",
                    "param": param,
                    "message": "Amount must be no more than $999,999.99",
                }
                return 400, {"error": error}
        return None

    def _answer(self, call: Call) -> dict:
        if call.path == "/v1/customers":
            return {"id": f"cus_test_{next(self._ids)}", "object": "customer"}
        if call.path == "/v1/checkout/sessions":
            session_id = f"cs_test_{next(self._ids)}"
            session = {
                "id": session_id,
                "object": "checkout.session",
                "url": f"https://checkout.stripe.test/pay/{session_id}",
                "payment_status": "unpaid",
                "client_reference_id": call.params.get("client_reference_id"),
                "metadata": {"purchase_id": call.params.get("metadata[purchase_id]")},
            }
            self.sessions[session_id] = session
            return session
        if call.path.startswith("/v1/checkout/sessions/"):
            return self.sessions[call.path.rsplit("/", 1)[1]]
        if call.path.startswith("/v1/subscriptions/"):
            subscription_id = call.path.rsplit("/", 1)[1]
            subscription = self.subscriptions.setdefault(
                subscription_id, {"id": subscription_id, "object": "subscription"}
            )
            if call.method == "POST" and "items[0][price]" in call.params:
                item = {"id": call.params.get("items[0][id]"), "object": "subscription_item"}
                pending = call.params.get("payment_behavior") == "pending_if_incomplete"
                # A pending update leaves the item on its old price until the proration
                # invoice is paid; the tests deliver what Stripe sends next.
                if not pending:
                    item["price"] = {"id": call.params["items[0][price]"]}
                    subscription["items"] = {"object": "list", "data": [item]}
            return subscription
        if call.path == "/v1/billing_portal/sessions":
            return {
                "id": "bps_1",
                "object": "billing_portal.session",
                "url": "https://billing.stripe.test/p/1",
            }
        if call.path == "/v1/invoiceitems":
            return {"id": f"ii_{next(self._ids)}", "object": "invoiceitem"}
        if call.path.startswith("/v1/invoices/"):
            invoice_id = call.path.rsplit("/", 1)[1]
            return {
                "id": invoice_id,
                "object": "invoice",
                "hosted_invoice_url": f"https://invoice.stripe.test/{invoice_id}",
            }
        if call.path == "/v1/invoices":
            return {"id": f"in_test_{next(self._ids)}", "object": "invoice"}
        return {"error": {"message": f"fake has no {call.path}"}}

    def close(self):
        pass

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]


@dataclass
class Events:
    """Stripe events as Stripe would send them, signed with the SDK's own helper."""

    secret: str
    sent: list = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def event(self, type_: str, obj: dict, *, created: int, event_id: str | None = None) -> dict:
        return {
            "id": event_id or f"evt_test_{next(self._ids)}",
            "object": "event",
            "type": type_,
            "created": created,
            "data": {"object": obj},
        }

    def sign(self, payload: str, *, timestamp: int | None = None, secret: str | None = None):
        return stripe.WebhookSignature.generate_signature_header(
            payload, secret or self.secret, timestamp=timestamp
        )
