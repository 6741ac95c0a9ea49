"""Admin helpers shared by the apps."""

from django import forms
from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """For rows that change only through services or Stripe's events: support may look and
    search, never add, edit or delete."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class OwnerFixedAdmin(admin.ModelAdmin):
    """Lists in `fixed_after_add` the foreign keys that say whose a row is (organization,
    plan, user...). They are chosen on add and read-only afterwards: re-pointing an existing
    row would carry its holds, redemptions and history into another organization or onto
    another person without any ledger entry saying so."""

    fixed_after_add: tuple[str, ...] = ()

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields += [name for name in self.fixed_after_add if name not in fields]
        return fields


class OwnerFixedInlineForm(forms.ModelForm):
    """The same rule for inline rows. An inline's get_readonly_fields only knows the parent
    object, not the row, so existing rows get their fields disabled instead: Django then
    keeps the saved value whatever is posted, and a new row stays free to choose."""

    fixed_after_add: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            for name in self.fixed_after_add:
                if name in self.fields:
                    self.fields[name].disabled = True
