"""The Assign credits page's forms."""

from django import forms

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
    token = forms.UUIDField(required=False)

    def clean(self):
        data = super().clean()
        moves = {"allocate", "release", "assign", "take_back"}
        if (
            data.get("action") in moves
            and not data.get("quantity")
            and "quantity" not in self.errors
        ):
            self.add_error("quantity", "Enter a number of credits above zero.")
        return data
