from django.contrib import admin

from config.admin import LargeTableAdmin, OwnerFixedAdmin, organization_filter

from .models import CartLine, Course, Level


class LevelInline(admin.TabularInline):
    model = Level
    extra = 0


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    list_display = ["title", "category", "duration_minutes", "published"]
    list_filter = ["published", "category"]
    search_fields = ["title", "summary"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [LevelInline]


@admin.register(Level)
class LevelAdmin(OwnerFixedAdmin):
    # Enrollments of a level stay in its course (a level change moves within one course).
    fixed_after_add = ("course",)
    list_display = ["course", "name", "order", "credit_cost"]
    list_filter = ["course__category"]
    search_fields = ["course__title", "name"]
    list_select_related = ["course"]


# Courses and levels are the platform's catalogue, a short list; carts belong to every admin
# of every organization.
@admin.register(CartLine)
class CartLineAdmin(LargeTableAdmin, OwnerFixedAdmin):
    fixed_after_add = ("organization", "user")
    list_display = ["organization", "user", "level", "seats"]
    list_filter = [organization_filter()]
    search_fields = ["organization__name", "user__email", "level__course__title"]
    list_select_related = ["organization", "user", "level__course"]
    autocomplete_fields = ["organization", "user", "level"]
