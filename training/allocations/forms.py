"""The Assign credits page's forms."""

from django import forms

from training.plans.forms import NoNulCharField

ID_FIELD = {"min_value": 1, "max_value": 2**63 - 1, "required": False}


class AllocationForm(forms.Form):
    """Every form of the Assign credits page posts its `action` and what it acts on. The
    token (one per rendered form) keys the ledger transfer, so a double submission or the
    Back button moves credits once."""

    ACTIONS = ["allocate", "release", "register", "assign", "take_back", "enroll"]

    action = forms.ChoiceField(
        choices=[(a, a) for a in ACTIONS], error_messages={"invalid_choice": "Unknown action."}
    )
    quantity = forms.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        required=False,
        error_messages={
            "min_value": "Enter a number of credits above zero.",
            "max_value": "That is more credits than any account can hold.",
            "invalid": "Enter a whole number of credits.",
        },
    )
    course = forms.IntegerField(**ID_FIELD)
    manager = forms.IntegerField(**ID_FIELD)
    user = forms.IntegerField(**ID_FIELD)
    level = forms.IntegerField(**ID_FIELD)
    # Register and enroll name the member by address (typed, or picked from the search's
    # suggestions); `user` (an id) is still read from pages rendered before.
    email = forms.CharField(required=False, max_length=254, strip=True)
    token = forms.UUIDField(required=False)

    def clean_email(self) -> str:
        email = self.cleaned_data["email"]
        if "\x00" in email:
            raise forms.ValidationError("Enter the member's email address.")
        return email

    def clean(self):
        data = super().clean()
        moves = {"allocate", "release", "assign", "take_back"}
        if (
            data.get("action") in moves
            and not data.get("quantity")
            and "quantity" not in self.errors
        ):
            self.add_error("quantity", "Enter a number of credits above zero.")
        if (
            data.get("action") in {"register", "enroll"}
            and not data.get("user")
            and not data.get("email")
            and "email" not in self.errors
        ):
            self.add_error("email", "Enter the member's email address.")
        return data


class MemberLookupForm(forms.Form):
    """What the admin has typed so far in a member's address box."""

    email = forms.CharField(required=False, max_length=254, strip=True)

    def clean_email(self) -> str:
        return self.cleaned_data["email"].replace("\x00", "")


class AllocationsPageForm(forms.Form):
    """What part of the Assign credits page to show: a page of courses, or one course with a
    page of its managers (an organization may have hundreds of managers)."""

    page = forms.IntegerField(min_value=1, max_value=1_000_000, required=False)
    course = forms.IntegerField(**ID_FIELD)
    managers_page = forms.IntegerField(min_value=1, max_value=1_000_000, required=False)


class CreditRequestForm(forms.Form):
    """A manager asks for credits for one of their courses."""

    quantity = forms.IntegerField(
        min_value=1,
        max_value=100_000,
        label="Credits",
        error_messages={
            "required": "Enter how many credits you need.",
            "min_value": "Ask for at least one credit.",
            "max_value": "Ask for at most 100,000 credits at a time.",
            "invalid": "Enter a whole number of credits.",
        },
    )
    note = NoNulCharField(required=False, max_length=1000, strip=True, label="Note for your admins")
    token = forms.UUIDField(error_messages={"required": "Reload the page and try again."})


class CreditRequestAnswerForm(forms.Form):
    """An admin approves or declines a request, with a note for the manager."""

    decision = forms.ChoiceField(
        choices=[("approve", "Approve"), ("decline", "Decline")],
        error_messages={"invalid_choice": "Choose approve or decline."},
    )
    note = NoNulCharField(required=False, max_length=1000, strip=True, label="Note")
