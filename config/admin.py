"""Admin helpers shared by the apps."""

from functools import cached_property

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import lookup_spawns_duplicates
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import Model, Q, QuerySet
from django.http import HttpResponseRedirect
from django.utils.text import smart_split, unescape_string_literal


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


# --- Lists over tables that grow with history ----------------------------------------------


class CappedCountPaginator(Paginator):
    """Counts the rows a list shows up to `cap`, never the whole table.

    Django's paginator runs `SELECT COUNT(*)` over the list's query to number its pages: over
    a big organization's ledger that reads millions of rows on every page. This counts at
    most `cap + 1` rows (`COUNT(*)` over a `LIMIT`, ordering dropped), so the figure is exact
    below the cap, filtered or not, and otherwise the list pages through its first `cap` rows
    and says so (`CappedChangeList`); search or filters reach the rest.

    Not an estimate from pg_class.reltuples: that is only the whole table's size, so a
    filtered list (one organization's lots, one status) would still need a real count, and
    even unfiltered it is only as fresh as the last ANALYZE, so the last pages it promises can
    be empty, or rows past it unreachable. The cap also bounds the pages themselves: the
    deepest one reads `cap` rows through its OFFSET, not the table."""

    cap = 10_000
    more = False  # whether rows past the cap exist; known once `count` was read

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if not hasattr(rows, "order_by"):
            return super().count
        counted = rows.order_by()[: self.cap + 1].count()
        self.more = counted > self.cap
        return min(counted, self.cap)


class CappedChangeList(ChangeList):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if getattr(self.paginator, "more", False):
            # The page's heading, since the count beside the pages cannot say "at least".
            self.title = (
                f"{self.title} (the first {self.paginator.cap:,} in this order; "
                "search or filter to reach the others)"
            )


class LargeTableAdmin(admin.ModelAdmin):
    """For lists over tables that grow with history (ledger rows, holds, outbox messages,
    Stripe events, plans and their people...): a page costs a page, however big the table.

    Subclasses also keep to these, which a base class cannot do for them:
    - `ordering` by an indexed column (`-id`), so a page is read from an index, not sorted;
    - `list_select_related` for every foreign key shown;
    - no `date_hierarchy` (it asks for the distinct dates of the whole list);
    - `list_filter` choices that read no table: fixed choices, `organization_filter`,
      `recent_values_filter`, never a related field's every row or a column's DISTINCT;
    - `autocomplete_fields` or `raw_id_fields` for a foreign key input to a big table."""

    paginator = CappedCountPaginator
    # With filters or a search, Django counts the unfiltered table too, for "N total".
    show_full_result_count = False
    # Facets count every choice of every filter over the list.
    show_facets = admin.ShowFacets.NEVER
    ordering = ("-id",)
    # Rendering a row of links costs about half a millisecond in the admin's templates: a
    # page of 50 keeps a ledger list under 50 ms, whatever the table's size.
    list_per_page = 50

    # A search by organization name reads the matching rows' ids first when there are at
    # most this many; past it, the join is cheaper.
    search_ids_limit = 5_000

    def get_changelist(self, request, **kwargs):
        return CappedChangeList

    def get_search_results(self, request, queryset, search_term):
        """Django searches `account__organization__name` by joining every row to its
        organization and walking the list's order (the primary key, backwards) until a page
        of rows matches: for a small organization beside a big one, the whole table. The
        organizations (and the rows between, such as accounts) whose name matches are looked
        up first, and the list is filtered by their ids, which an index serves."""
        fields = list(self.get_search_fields(request))
        by_name = [f for f in fields if f.endswith("organization__name")]
        if not search_term or not by_name or any(f[0] in "^=@" for f in fields):
            return super().get_search_results(request, queryset, search_term)
        bits = []
        for bit in smart_split(search_term):
            if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
                bit = unescape_string_literal(bit)
            bits.append(bit)
        duplicates = any(lookup_spawns_duplicates(self.opts, field) for field in fields)
        if not bits:  # only spaces: no word to look for, the whole list as Django shows it
            return queryset, False
        if fields == by_name[:1]:
            # The organization's name is the one field: every word must match it, so the rows
            # are those of the organizations matching all words, as one list of ids. ANDed
            # lists instead ("Acme" matches two organizations, "Labs" one) make the planner
            # expect the rows of all of them and walk the whole table for a small one.
            found = [self._ids_for(queryset, fields[0], bit) for bit in bits]
            if all(ids is not None for _, ids in found):
                path = found[0][0]
                common = sorted(set.intersection(*(set(ids) for _, ids in found)))
                matching = queryset.filter(**{f"{path}__in": common})
                # A small organization's rows are few, and old: the list's order (newest
                # id first) would walk the table from its end to reach them, because the
                # planner spreads them evenly. Their ids, read by the path's index, let it
                # take them straight from the primary key.
                rows = list(
                    matching.order_by().values_list("pk", flat=True)[: self.search_ids_limit + 1]
                )
                if len(rows) <= self.search_ids_limit:
                    return queryset.filter(pk__in=rows), duplicates
                return matching, duplicates
        else:
            found = None
        for n, bit in enumerate(bits):
            term = Q()
            for field in fields:
                if not field.endswith("organization__name"):
                    term |= Q(**{f"{field}__icontains": bit})
                    continue
                # The ids looked up above, for the one-field case, are not looked up again.
                path, ids = found[n] if found else self._ids_for(queryset, field, bit)
                term |= Q(**{f"{field}__icontains": bit} if ids is None else {f"{path}__in": ids})
            queryset = queryset.filter(term)
        return queryset, duplicates

    def _ids_for(self, queryset: QuerySet, field: str, bit: str) -> tuple[str, list | None]:
        """For `field` (an organization's name, reached from the listed model) and one word:
        the path to filter by ids, and those ids, or None past `search_ids_limit`."""
        # `a__b__organization__name`: the ids of the rows `a__b` names whose organization
        # matches; `organization__name`: the organizations' own ids.
        path = field.removesuffix("__name").split("__")
        ids = list(
            model_at(queryset.model, path)
            ._default_manager.filter(name__icontains=bit)
            .order_by()
            .values_list("pk", flat=True)[: self.search_ids_limit + 1]
        )
        if len(path) > 1 and len(ids) <= self.search_ids_limit:
            *through, last = path
            ids = list(
                model_at(queryset.model, through)
                ._default_manager.filter(**{f"{last}__in": ids})
                .order_by()
                .values_list("pk", flat=True)[: self.search_ids_limit + 1]
            )
            path = through
        if len(ids) > self.search_ids_limit:
            return "__".join(path), None
        return "__".join(path), ids

    def changelist_view(self, request, extra_context=None):
        # PostgreSQL refuses NUL in text, and no row holds one: a filter or search carrying
        # one is dropped here, once for every list, with a word why, instead of failing in
        # the query.
        kept = request.GET.copy()
        dropped = [name for name, values in kept.lists() if any("\x00" in v for v in values)]
        if dropped:
            for name in dropped:
                del kept[name]
            messages.warning(
                request,
                f"Ignored {', '.join(dropped)}: it contained a NUL character, which no "
                "record holds.",
            )
            return HttpResponseRedirect(f"{request.path}?{kept.urlencode()}")
        return super().changelist_view(request, extra_context)


def model_at(model: type[Model], path: list[str]) -> type[Model]:
    """The model at the end of `path`, a chain of foreign keys from `model`."""
    for name in path:
        model = model._meta.get_field(name).related_model
    return model


def organization_filter(path: str = "organization") -> type[admin.SimpleListFilter]:
    """A list filter by organization that lists no organizations: it shows the one chosen
    (reached from the organization's own admin page, or `?<path>=<id>`) with a way back to
    all. Django's filter for a foreign key lists every organization there is.

    The parameter is the path itself: Django admits a parameter through two relations
    (`account__organization`) only when a list filter is named after it."""

    class OrganizationFilter(admin.SimpleListFilter):
        title = "organization"
        parameter_name = path

        def lookups(self, request, model_admin):
            from accounts.models import Organization  # config/ imports no app at load time

            value, chosen = self.value(), self._chosen()
            if value is None:
                return []
            if chosen is None:
                # Still listed, so that Django applies the filter (an empty list), rather
                # than dropping it and listing everything.
                return [(value, "(not an organization id)")]
            name = Organization.objects.filter(pk=chosen).values_list("name", flat=True)
            return [(value, name.first() or f"#{chosen} (no such organization)")]

        def _chosen(self) -> int | None:
            value = self.value()
            # Anything else would fail in the query (an id is a positive bigint).
            if value and value.isascii() and value.isdigit() and len(value) <= 18:
                return int(value)
            return None

        def queryset(self, request, queryset):
            if self.value() is None:
                return queryset
            chosen = self._chosen() or 0
            *through, last = path.split("__")
            if through:
                # Through a join (`account__organization`), no index serves "this
                # organization's rows, newest id first": PostgreSQL walked the whole table's
                # primary key backwards. The related rows' ids, as a list, let it read each
                # one's rows by index (a small organization) or still walk the key (a big
                # one).
                related = model_at(queryset.model, through)
                ids = related._default_manager.filter(**{last: chosen}).values_list("pk", flat=True)
                return queryset.filter(**{f"{'__'.join(through)}__in": list(ids)})
            return queryset.filter(**{path: chosen})

    return OrganizationFilter


def recent_values_filter(field: str, *, recent: int = 5_000) -> type[admin.SimpleListFilter]:
    """A list filter on a plain column (no choices) that offers the values found among the
    newest `recent` rows (by id), instead of Django's DISTINCT over the whole table. An older
    value is not offered but still filters by its URL (`?<field>=<value>`)."""

    class RecentValuesFilter(admin.SimpleListFilter):
        title = field.replace("_", " ")
        parameter_name = field

        def lookups(self, request, model_admin):
            model = model_admin.model
            newest = model._default_manager.order_by("-pk").values_list("pk", flat=True)[:recent]
            values = (
                model._default_manager.filter(pk__in=newest)
                .exclude(**{field: ""})
                .order_by(field)
                .values_list(field, flat=True)
                .distinct()
            )
            return [(value, value) for value in values]

        def queryset(self, request, queryset):
            value = self.value()
            if value is None:
                return queryset
            return queryset.filter(**{field: value})  # NUL refused by LargeTableAdmin

    return RecentValuesFilter
