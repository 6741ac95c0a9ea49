"""Every input of the catalog and cart pages, with limits matching the columns."""

from django import forms

from .services import MAX_SEATS


class SearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=200)
    category = forms.CharField(required=False, max_length=100)

    def clean_q(self) -> str:
        # NUL cannot reach PostgreSQL; nobody searches for it.
        return self.cleaned_data["q"].replace("\x00", "")

    def clean_category(self) -> str:
        return self.cleaned_data["category"].replace("\x00", "")


SEATS_HELP = f"Choose between 1 and {MAX_SEATS:,} seats."


def seats_field(*, required: bool = True) -> forms.IntegerField:
    wrong = {key: SEATS_HELP for key in ("required", "invalid", "min_value", "max_value")}
    return forms.IntegerField(
        min_value=1, max_value=MAX_SEATS, required=required, error_messages=wrong
    )


class SeatsForm(forms.Form):
    seats = seats_field()


class CartLineForm(forms.Form):
    action = forms.ChoiceField(choices=[("update", "update"), ("remove", "remove")], required=False)
    seats = seats_field(required=False)

    def clean(self):
        data = super().clean()
        if data.get("action") != "remove" and data.get("seats") is None and not self.errors:
            raise forms.ValidationError(SEATS_HELP)
        return data
