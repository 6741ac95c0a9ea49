from django.contrib import admin

from .models import CreditPackage, PriceList, VolumeTier


class VolumeTierInline(admin.TabularInline):
    model = VolumeTier
    extra = 0


class CreditPackageInline(admin.TabularInline):
    model = CreditPackage
    extra = 0


@admin.register(PriceList)
class PriceListAdmin(admin.ModelAdmin):
    list_display = ["currency", "list_price_minor"]
    inlines = [VolumeTierInline, CreditPackageInline]


@admin.register(CreditPackage)
class CreditPackageAdmin(admin.ModelAdmin):
    list_display = ["name", "credits", "price_minor", "price_list", "active"]
    list_filter = ["active", "price_list"]
    search_fields = ["name"]


@admin.register(VolumeTier)
class VolumeTierAdmin(admin.ModelAdmin):
    list_display = ["price_list", "min_quantity", "unit_price_minor"]
    list_filter = ["price_list"]
    search_fields = ["price_list__currency"]
