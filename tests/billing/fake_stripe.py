"""Stripe's servers are out of reach: this fake stands at the HTTP client the SDK takes, so
everything above it (the SDK's encoding, headers, idempotency keys) is real.

Two parts of Stripe are modelled only when a test asks for them:

- `idempotent = True`: a POST with an Idempotency-Key seen before is answered with the
  first answer and does nothing again if its parameters are the same, and refused with
  `idempotency_error` (HTTP 400) if they differ, as Stripe does. Refusals are not kept.
- Subscriptions made with `subscription_start` (SubscriptionModel): their price, period and
  pending update, the customer's balance, and the invoices and events Stripe makes for a
  plan change (`POST /v1/subscriptions/<id>` from the code under test, or `portal_change`
  for the customer portal), a renewal (`renew`) and a payment (`pay`). See the class.
"""

import itertools
import json
import time
from dataclasses import dataclass, field
from fractions import Fraction
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
        self.idempotent = False
        self._replies: dict[str, tuple[Call, int, dict]] = {}
        self.model = SubscriptionModel(self)
        # Off-session charges (auto top-up): what each saved card does when charged.
        self.card_outcomes: dict[str, str] = {}
        self.setup_intents: dict[str, str] = {}  # setup intent id -> its saved card
        # path -> how many requests to it fail next with a 500 (the SDK retries those).
        self.server_error_next: dict[str, int] = {}

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        parts = urlsplit(url)
        params = dict(parse_qsl(post_data or parts.query or ""))
        call = Call(method.upper(), parts.path, dict(headers or {}), params)
        self.calls.append(call)
        self.in_transaction.append(connection.in_atomic_block)
        key = call.idempotency_key if self.idempotent and call.method == "POST" else None
        if key and key in self._replies:
            first, status, body = self._replies[key]
            if (first.path, first.params) != (call.path, call.params):
                status, body = (
                    400,
                    {
                        "error": {
                            "type": "idempotency_error",
                            "message": "Keys for idempotent requests can only be used with the "
                            "same parameters they were first used with.",
                        }
                    },
                )
            return json.dumps(body), status, {"Request-Id": f"req_{next(self._ids)}"}
        refusal = self._refusal(call)
        status, body = refusal or (200, self._answer(call))
        if key and refusal is None:
            self._replies[key] = (call, status, body)
        return json.dumps(body), status, {"Request-Id": f"req_{next(self._ids)}"}

    def _refusal(self, call: Call) -> tuple[int, dict] | None:
        if self.server_error_next.get(call.path):
            self.server_error_next[call.path] -= 1
            return 500, {"error": {"type": "api_error", "message": "Stripe is having trouble"}}
        if call.path == "/v1/payment_intents" and call.method == "POST":
            outcome = self.card_outcomes.get(call.params.get("payment_method", ""), "succeeded")
            if outcome != "succeeded":
                # As Stripe answers a confirmed off-session payment that fails: 402, a card
                # error naming the PaymentIntent, left requiring a payment method.
                intent = self._payment_intent(call, "requires_payment_method")
                message = {
                    "card_declined": "Your card was declined.",
                    "authentication_required": "Your card was declined. This transaction "
                    "requires authentication.",
                }[outcome]
                error = {
                    "type": "card_error",
                    "code": outcome,
                    "message": message,
                    "payment_intent": intent,
                }
                return 402, {"error": error}
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

    def _payment_intent(self, call: Call, status: str) -> dict:
        return {
            "id": f"pi_test_{call.params.get('metadata[purchase_id]')}",
            "object": "payment_intent",
            "amount": int(call.params["amount"]),
            "currency": call.params["currency"],
            "status": status,
            "metadata": {
                key[len("metadata[") : -1]: value
                for key, value in call.params.items()
                if key.startswith("metadata[")
            },
        }

    def _answer(self, call: Call) -> dict:
        if call.path == "/v1/payment_intents":
            return self._payment_intent(call, "succeeded")
        if call.path.startswith("/v1/setup_intents/"):
            intent_id = call.path.rsplit("/", 1)[1]
            return {
                "id": intent_id,
                "object": "setup_intent",
                "payment_method": self.setup_intents[intent_id],
            }
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
            if subscription_id in self.model.subscriptions:
                return self.model.answer(call, subscription_id)
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


class SubscriptionModel:
    """Subscriptions as Stripe bills them, for the price ids registered in `prices`
    (id -> (amount in minor units, currency)). Times are `time.time()` (time-machine
    moves them). What is modelled, after Stripe's documented behaviour:

    - A plan change with `proration_behavior=always_invoice` invoices at once: the unused
      time of the old price credited (a negative line) and the rest of the period at the new
      price charged, each line rounded to the minor unit, for the seconds from the change
      to the period's end over the period's length.
    - The customer's balance (negative: credit, as Stripe's `balance`): an invoice whose
      total is negative adds it to the balance and is paid with nothing charged; one whose
      total is positive uses the balance first. `amount_paid` is what was charged after it,
      `starting_balance` / `ending_balance` say what the balance did.
    - `payment_behavior=pending_if_incomplete` with something to charge leaves the item on
      its old price (`pending_update`) until `pay(invoice)`; with nothing to charge the
      change applies at once. The customer portal (`portal_change`) changes at once and
      charges the card at once.
    - A renewal (`renew`, at the period's end) invoices the next period at the current
      price (`subscription_cycle`), balance first.

    Each of these queues the events Stripe sends, in its order, in `outbox`:
    `customer.subscription.updated` for the change, then `invoice.paid` (and, for a pending
    update, `customer.subscription.updated` again once it is paid and applied). Not
    modelled: taxes, discounts, failed card payments, trials, cancellation."""

    def __init__(self, fake: "FakeStripe"):
        self.fake = fake
        self.prices: dict[str, tuple[int, str]] = {}
        self.subscriptions: dict[str, dict] = {}
        self.balances: dict[str, int] = {}
        self.invoices: dict[str, dict] = {}
        self.outbox: list[tuple[str, dict, int]] = []

    @staticmethod
    def now() -> int:
        return int(time.time())

    def subscription_start(self, sub_id, *, customer, price, metadata, length) -> dict:
        start = self.now()
        self.subscriptions[sub_id] = {
            "id": sub_id,
            "customer": customer,
            "price": price,
            "item": f"si_{sub_id}",
            "metadata": metadata,
            "start": start,
            "end": start + length,
            "pending": None,
        }
        self._event("customer.subscription.created", self.subscription(sub_id))
        invoice = self._invoice(
            sub_id,
            "subscription_create",
            [self._line(sub_id, price, self.prices[price][0], start, proration=False)],
        )
        return self.pay(invoice["id"])

    def subscription(self, sub_id) -> dict:
        sub = self.subscriptions[sub_id]
        pending = sub["pending"]
        return {
            "id": sub_id,
            "object": "subscription",
            "customer": sub["customer"],
            "status": "active",
            "metadata": sub["metadata"],
            "cancel_at_period_end": False,
            "pending_update": (
                {"subscription_items": [{"id": sub["item"], "price": {"id": pending["price"]}}]}
                if pending
                else None
            ),
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": sub["item"],
                        "object": "subscription_item",
                        "price": {"id": sub["price"]},
                        "current_period_start": sub["start"],
                        "current_period_end": sub["end"],
                    }
                ],
            },
        }

    def answer(self, call, sub_id) -> dict:
        if call.method == "POST" and "items[0][price]" in call.params:
            self.change(
                sub_id,
                call.params["items[0][price]"],
                pending=call.params.get("payment_behavior") == "pending_if_incomplete",
            )
        return self.subscription(sub_id)

    def portal_change(self, sub_id, price) -> dict:
        return self.change(sub_id, price, pending=False)

    def change(self, sub_id, price, *, pending) -> dict:
        sub = self.subscriptions[sub_id]
        now = self.now()
        remaining = Fraction(sub["end"] - now, sub["end"] - sub["start"])
        lines = [
            self._line(
                sub_id,
                sub["price"],
                -round(self.prices[sub["price"]][0] * remaining),
                now,
                proration=True,
            ),
            self._line(
                sub_id, price, round(self.prices[price][0] * remaining), now, proration=True
            ),
        ]
        invoice = self._invoice(sub_id, "subscription_update", lines)
        if pending and invoice["amount_due"] > 0:
            sub["pending"] = {"price": price, "invoice": invoice["id"]}
            self._event("customer.subscription.updated", self.subscription(sub_id))
            return invoice
        sub["price"] = price
        self._event("customer.subscription.updated", self.subscription(sub_id))
        return self.pay(invoice["id"])

    def renew(self, sub_id) -> dict:
        sub = self.subscriptions[sub_id]
        length = sub["end"] - sub["start"]
        sub["start"], sub["end"] = sub["end"], sub["end"] + length
        sub["pending"] = None  # an unpaid pending update does not outlive its period
        self._event("customer.subscription.updated", self.subscription(sub_id))
        amount = self.prices[sub["price"]][0]
        line = self._line(sub_id, sub["price"], amount, sub["start"], proration=False)
        return self.pay(self._invoice(sub_id, "subscription_cycle", [line])["id"])

    def pay(self, invoice_id) -> dict:
        invoice = self.invoices[invoice_id]
        invoice.update(
            status="paid",
            amount_paid=invoice["amount_due"],
            amount_remaining=0,
            status_transitions={"paid_at": self.now()},
        )
        self._event("invoice.paid", json.loads(json.dumps(invoice)))
        sub_id = invoice["parent"]["subscription_details"]["subscription"]
        sub = self.subscriptions[sub_id]
        if sub["pending"] and sub["pending"]["invoice"] == invoice_id:
            sub["price"], sub["pending"] = sub["pending"]["price"], None
            self._event("customer.subscription.updated", self.subscription(sub_id))
        return invoice

    def _line(self, sub_id, price, amount, start, *, proration) -> dict:
        return {
            "amount": amount,
            "currency": self.prices[price][1].lower(),
            "pricing": {"price_details": {"price": price}},
            "period": {"start": start, "end": self.subscriptions[sub_id]["end"]},
            "proration": proration,
        }

    def _invoice(self, sub_id, reason, lines) -> dict:
        sub = self.subscriptions[sub_id]
        total = sum(line["amount"] for line in lines)
        starting = self.balances.get(sub["customer"], 0)
        # Finalizing applies the balance: a credit pays first, a negative total adds to it.
        used = min(-starting, total) if total > 0 and starting < 0 else 0
        ending = starting + used if total > 0 else starting + total
        self.balances[sub["customer"]] = ending
        invoice_id = f"in_fake_{next(self.fake._ids)}"
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "customer": sub["customer"],
            "billing_reason": reason,
            "currency": self.prices[sub["price"]][1].lower(),
            "total": total,
            "amount_due": max(total, 0) - used,
            "amount_paid": 0,
            "starting_balance": starting,
            "ending_balance": ending,
            "status": "open",
            "parent": {
                "subscription_details": {"subscription": sub_id, "metadata": sub["metadata"]}
            },
            "lines": {"object": "list", "data": lines},
        }
        self.invoices[invoice_id] = invoice
        return invoice

    def _event(self, type_, obj) -> None:
        self.outbox.append((type_, obj, self.now()))

    def take_events(self) -> list[tuple[str, dict, int]]:
        taken, self.outbox = self.outbox, []
        return taken


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
