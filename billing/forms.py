"""Every parameter the billing pages read, with its limits. Anything a browser (or a hostile
script) can send ends as a form error or a message, never as an exception further down."""

from __future__ import annotations

import re

from django import forms

# Database ids are 64-bit; a bigger number cannot name a row, so it is refused here.
MAX_ID = 2**63 - 1
# Credits are counted in 32-bit columns.
MAX_CREDITS = 2**31 - 1
# Longer than any id or quantity written in digits: a 10 kB "number" is refused unparsed.
MAX_DIGITS = 20
NEXT_MAX_LENGTH = 500  # Purchase.next_url

_WHOLE = re.compile(r"-?[0-9]+")  # ASCII only: int() would also read "١٢" or "٣" as numbers


class WholeNumberField(forms.IntegerField):
    """A whole number in ASCII digits; a sign is read so "-3" gets the "above zero" error."""

    default_error_messages = {"invalid": "Enter a whole number (digits 0 to 9 only)."}

    def to_python(self, value):
        if value in self.empty_values:
            return None
        text = str(value).strip()
        if len(text) > MAX_DIGITS or not _WHOLE.fullmatch(text):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return int(text)


class NextField(forms.CharField):
    """Where to go after paying. Nobody types it, so a value that does not fit (a NUL byte,
    too long) is dropped rather than refusing the purchase; it is never stored or followed."""

    def __init__(self, **kwargs):
        super().__init__(required=False, max_length=NEXT_MAX_LENGTH, **kwargs)

    def clean(self, value):
        try:
            return super().clean(value)
        except forms.ValidationError:
            return ""


def first_error(form: forms.Form) -> str:
    """The first error of an invalid form, as a message fit to show."""
    for errors in form.errors.values():
        if errors:
            return str(errors[0])
    return "The form was out of date. Please choose again."


def cleaned_next(form: forms.Form) -> str:
    return form.cleaned_data.get("next") or ""


class AddCreditsQuery(forms.Form):
    """The Add credits page's query: `need` from a page that ran short, `quantity` typed."""

    # No upper bound here: both are only priced, never stored, and a number above the price
    # list's limit gets the explanation of that limit rather than a bare "too big".
    need = WholeNumberField(
        required=False,
        min_value=1,
        error_messages={"min_value": "The credits needed must be above zero."},
    )
    quantity = WholeNumberField(
        required=False,
        min_value=1,
        error_messages={"min_value": "Enter how many credits to buy (a whole number above zero)."},
    )
    next = NextField()


class PurchaseForm(forms.Form):
    """One Buy button: a package, or a typed quantity; `request_token` is that form's own."""

    request_token = forms.UUIDField(
        error_messages={
            "required": "The form was out of date. Please choose again.",
            "invalid": "The form was out of date. Please choose again.",
        }
    )
    package = WholeNumberField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        error_messages={
            "min_value": "That package is not on sale any more.",
            "max_value": "That package is not on sale any more.",
            "invalid": "That package is not on sale any more.",
        },
    )
    quantity = WholeNumberField(
        required=False,
        min_value=1,
        error_messages={"min_value": "Enter how many credits to buy (a whole number above zero)."},
    )
    # The total the page showed for this choice, in minor units; absent on the typed field,
    # whose total the admin has not necessarily seen. Checkout refuses a different total.
    total = WholeNumberField(
        required=False,
        min_value=0,
        error_messages={
            "min_value": "The form was out of date. Please choose again.",
            "invalid": "The form was out of date. Please choose again.",
        },
    )
    next = NextField()

    def __init__(self, *args, max_quantity: int = MAX_CREDITS, limit_message: str = "", **kw):
        super().__init__(*args, **kw)
        self.max_quantity = min(max_quantity, MAX_CREDITS)
        self.limit_message = limit_message or f"Buy at most {self.max_quantity:,} credits at once."

    def clean_quantity(self):
        # The price list's limit is checked here, before any Stripe request: Stripe would
        # refuse the charge, and the admin would only hear that it "did not answer".
        quantity = self.cleaned_data.get("quantity")
        if quantity is not None and quantity > self.max_quantity:
            raise forms.ValidationError(self.limit_message, code="max_value")
        return quantity

    def clean(self):
        data = super().clean()
        if "package" in self.errors or "quantity" in self.errors:
            return data
        if data.get("package") is None and data.get("quantity") is None:
            raise forms.ValidationError(
                "Enter how many credits to buy (a whole number above zero)."
            )
        return data


class PlanForm(forms.Form):
    plan = WholeNumberField(
        min_value=1,
        max_value=MAX_ID,
        error_messages={
            "required": "That plan is not available.",
            "invalid": "That plan is not available.",
            "min_value": "That plan is not available.",
            "max_value": "That plan is not available.",
        },
    )


class SubscribeForm(PlanForm):
    request_token = forms.UUIDField(
        error_messages={
            "required": "The form was out of date. Please choose again.",
            "invalid": "The form was out of date. Please choose again.",
        }
    )


class SimulatedPaymentForm(forms.Form):
    """The simulated checkout's two buttons."""

    action = forms.ChoiceField(choices=[("pay", "Pay"), ("cancel", "Cancel")])


class AutoTopUpForm(forms.Form):
    """Billing page: turn auto top-up on (or change it), or off."""

    action = forms.ChoiceField(choices=[("save", "save"), ("card", "card"), ("off", "off")])
    threshold = forms.IntegerField(
        min_value=1,
        max_value=1_000_000,
        required=False,
        label="When available credits fall below",
        error_messages={"min_value": "The threshold must be at least one credit."},
    )
    quantity = forms.IntegerField(
        min_value=1,
        max_value=100_000,
        required=False,
        label="Buy this many credits",
        error_messages={"max_value": "Buy at most 100,000 credits at a time."},
    )
    monthly_cap = forms.IntegerField(
        min_value=1,
        max_value=10_000_000,
        required=False,
        label="At most this many credits a month",
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("action") in ("save", "card"):
            for name in ("threshold", "quantity", "monthly_cap"):
                if cleaned.get(name) is None and name not in self.errors:
                    self.add_error(name, "Enter a whole number.")
        return cleaned


class SimulatedSetupForm(forms.Form):
    card = forms.ChoiceField(
        choices=[
            ("pm_sim_ok", "pays"),
            ("pm_sim_declined", "declined"),
            ("pm_sim_authentication", "authentication"),
        ]
    )
