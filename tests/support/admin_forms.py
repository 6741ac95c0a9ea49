"""Post a Django admin change form the way a browser would: every field with the value the
page shows, then the changes a test asks for."""

from django.test import Client
from django.urls import reverse


def admin_url(obj, view: str = "change") -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[obj.pk])


def _fields(form, data: dict) -> None:
    for name, field in form.fields.items():
        if field.disabled:
            continue  # A browser does not post a disabled field.
        value = form[name].value()
        if isinstance(value, bool):
            if value:
                data[form[name].html_name] = "on"
        elif value is not None:
            data[form[name].html_name] = value


def change_form_data(response) -> dict:
    """The data of the change page `response` showed, inline rows and their management forms
    included."""
    data: dict = {}
    _fields(response.context["adminform"].form, data)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        _fields(formset.management_form, data)
        for form in formset.forms:
            _fields(form, data)
    return data


def post_change(client: Client, obj, **changes):
    """Submit obj's change form with `changes` (by field name as posted, e.g. "plan" or
    "memberships-0-user") and return the response."""
    url = admin_url(obj)
    data = change_form_data(client.get(url))
    data.update(changes)
    return client.post(url, data)
