"""Forms of the training plan pages: every input a plan view reads goes through one, with
limits that match the columns, so odd input is a form error and never a 500."""

import datetime as dt

from django import forms
from django.core.validators import RegexValidator
from django.utils import timezone

from accounts.models import Membership

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


# Members added in one submission from the search picker: a page of ticks, not a directory.
MAX_MEMBERS_PICKED = 500


class AddPeopleForm(forms.Form):
    members = forms.MultipleChoiceField(required=False)
    emails = NoNulCharField(required=False, max_length=MAX_EMAILS_TEXT, strip=True)
    csv = forms.FileField(required=False)

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        # The choices are whatever the search showed; clean_members checks them against
        # the organization with one query of the ticked addresses, never a list of everyone.
        picked = self.data.getlist("members") if hasattr(self.data, "getlist") else []
        self.fields["members"].choices = [(email, email) for email in picked]

    def clean_members(self) -> list[str]:
        picked = list(dict.fromkeys(self.cleaned_data["members"]))
        if len(picked) > MAX_MEMBERS_PICKED:
            raise forms.ValidationError(
                f"Tick at most {MAX_MEMBERS_PICKED} members at once, or paste their addresses."
            )
        if any("\x00" in email or len(email) > 254 for email in picked):
            raise forms.ValidationError("Choose members from the search results.")
        known = set(
            Membership.objects.filter(
                organization=self.organization, user__email__in=picked
            ).values_list("user__email", flat=True)
        )
        if set(picked) - known:
            raise forms.ValidationError(
                "Someone you ticked is no longer a member of this organization."
            )
        return picked

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


class PageForm(forms.Form):
    """A list's page number from the query string; anything else is the first page."""

    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)


class PeopleFilterForm(forms.Form):
    """The People list's search, status filter and page: read from the query string."""

    STATUSES = [
        ("", "Everyone"),
        ("pending", "Not confirmed yet"),
        ("confirmed", "Confirmed"),
        ("removed", "Removed"),
    ]

    q = NoNulCharField(required=False, max_length=254, strip=True, label="Search people")
    status = forms.ChoiceField(required=False, choices=STATUSES, label="Status")
    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)


class MemberSearchForm(forms.Form):
    # Not `q`: the People list's search shares the plan page's query string.
    member_q = NoNulCharField(required=False, max_length=254, strip=True, label="Find members")


# People removed by one click of "Remove selected": one page of the list at most.
MAX_BULK_REMOVE = 200


class BulkRemoveForm(forms.Form):
    participants = forms.TypedMultipleChoiceField(coerce=int)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Ids of the ticked rows; which of them belong to the plan is the view's query.
        picked = self.data.getlist("participants") if hasattr(self.data, "getlist") else []
        self.fields["participants"].choices = [
            (value, value) for value in picked if value.isascii() and value.isdigit()
        ]

    def clean_participants(self) -> list[int]:
        ids = list(dict.fromkeys(self.cleaned_data["participants"]))
        if len(ids) > MAX_BULK_REMOVE:
            raise forms.ValidationError(f"Remove at most {MAX_BULK_REMOVE} people at once.")
        if any(not 0 < pk < 2**63 for pk in ids):
            raise forms.ValidationError("Tick people in the list to remove them.")
        return ids


class ReplaceForm(forms.Form):
    """Replace learner: the address of the person who takes the seat."""

    email = NoNulCharField(
        max_length=254,
        strip=True,
        label="Give the seat to",
        error_messages={"required": "Enter the email address of the person to give the seat to."},
    )
    # Where the admin clicked: the plan page, or the list of who has not started.
    back = forms.ChoiceField(
        choices=[("plan", "plan"), ("not_started", "not_started")], required=False
    )
