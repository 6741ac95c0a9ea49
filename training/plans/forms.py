"""Forms of the training plan pages: every input a plan view reads goes through one, with
limits that match the columns, so odd input is a form error and never a 500."""

import datetime as dt

from django import forms
from django.core.validators import RegexValidator
from django.utils import timezone

from .services import MAX_SEATS

# A pasted list or a CSV of this size is thousands of people: beyond it, split the file.
MAX_EMAILS_TEXT = 100_000


MAX_CSV_BYTES = 2 * 1024 * 1024


PLAN_NAME_LENGTH = 200


class NoNulCharField(forms.CharField):
    """PostgreSQL refuses NUL in text; a form error says so instead."""

    def to_python(self, value):
        value = super().to_python(value)
        if "\x00" in value:
            raise forms.ValidationError("Remove the invisible NUL characters from this text.")
        return value


# A plan starts within this many years of today: a typo such as 20266 is caught, and every
# date the plan's rules compute from its start (the level-change window) stays a date.
START_YEARS = 5


class CheckoutForm(forms.Form):
    name = NoNulCharField(max_length=PLAN_NAME_LENGTH)
    start_date = forms.DateField()

    def clean_start_date(self) -> dt.date:
        start = self.cleaned_data["start_date"]
        today = timezone.localdate()
        # Days, not replace(year=...): that fails on February 29.
        earliest = today - dt.timedelta(days=366)
        latest = today + dt.timedelta(days=366 * START_YEARS)
        if not earliest <= start <= latest:
            raise forms.ValidationError(
                f"Choose a start date between {earliest:%b %-d, %Y} and {latest:%b %-d, %Y}."
            )
        return start

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError("Give the plan a name.")
        return name


class ConfirmForm(forms.Form):
    token = forms.UUIDField()
    snapshot = forms.CharField(
        min_length=64, max_length=64, validators=[RegexValidator(r"^[0-9a-f]{64}$")]
    )


class AddPeopleForm(forms.Form):
    members = forms.MultipleChoiceField(required=False)
    emails = NoNulCharField(required=False, max_length=MAX_EMAILS_TEXT, strip=True)
    csv = forms.FileField(required=False)

    def __init__(self, *args, member_emails: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["members"].choices = [(email, email) for email in member_emails]

    def clean_csv(self):
        upload = self.cleaned_data.get("csv")
        if upload is not None and upload.size > MAX_CSV_BYTES:
            raise forms.ValidationError(
                f"The file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB: split it."
            )
        return upload


class SeatsForm(forms.Form):
    seats = forms.IntegerField(min_value=1, max_value=MAX_SEATS)


class AssignmentForm(forms.Form):
    participant = forms.IntegerField(min_value=1, max_value=2**63 - 1)
