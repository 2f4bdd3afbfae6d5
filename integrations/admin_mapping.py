"""The Mapping tab of the integration console at a site's size (issue 10): hundreds of rows, objects and locks.

The tab shows one page of a search of the mapping rows (`mapping_page`); its formset holds that page only, and on
a save the rows the page posted, so saving a page never touches another. Its selects search as you type (Django's
select2 and autocomplete.js) through two JSON views here, and the two bulk actions ("map objects to locks with
the same name", "clear a selection") preview on a GET and change only on a confirming POST, through
services.mapping. Everything here needs the permission to change the integration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import BadRequest, PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
    QueryDict,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from bookings.selectors import objects_search, tree_ordering
from integrations.forms import (
    WILDCARD_LABEL,
    WILDCARD_VALUE,
    LockMappingForm,
    LockMappingFormSet,
    lock_choice_label,
    parse_id,
)
from integrations.models import Integration, LockMapping
from integrations.outcomes import Outcome
from integrations.selectors import (
    SKIP_REASONS,
    MappingPage,
    cached_locks_by_id,
    cached_locks_search,
    mapping_page,
    mapping_problem,
    mapping_rows,
    same_name_plan,
    wildcard_matches,
)
from integrations.services.mapping import mappings_clear, mappings_map_same_name

# The Mapping tab's query parameters (on the change page's URL, so a save posts back to the same page).
SEARCH_PARAM = "mapping_q"
PAGE_PARAM = "mapping_page"
SEARCH_FORM_ID = "mapping-search"
CLEAR_FORM_ID = "mapping-clear"
SEARCH_RESULTS_PER_PAGE = 20  # what the search widget shows before "load more"
SEARCH_TEXT_MAX = 200
PREVIEW_ROWS_SHOWN = 200  # per reason in the "same name" preview; the rest are counted


class LockMappingInline(admin.TabularInline[LockMapping, Integration]):
    """The Mapping tab's rows: one page of a search (IntegrationAdmin.get_formset_kwargs picks the rows)."""

    model = LockMapping
    form = LockMappingForm
    formset = LockMappingFormSet
    template = "admin/integrations/integration/mapping_inline.html"
    fields = ["object", "lock_id", "mapping_status", "bulk_select"]
    readonly_fields = ["mapping_status", "bulk_select"]
    verbose_name = "mapping"
    verbose_name_plural = "Mapping: object → lock"
    classes = ["tab-mapping"]

    def get_extra(self, request: HttpRequest, obj: Integration | None = None, **kwargs: Any) -> int:
        return 1 if obj is not None and obj.mappings.exists() else 3

    def get_queryset(self, request: HttpRequest) -> QuerySet[LockMapping]:
        return super().get_queryset(request).select_related("object__parent")

    @admin.display(description="Lock state")
    def mapping_status(self, mapping: LockMapping) -> str:
        return lock_state_html(mapping)

    @admin.display(description="Select")
    def bulk_select(self, mapping: LockMapping) -> str:
        return bulk_select_html(mapping)


def lock_state_html(mapping: LockMapping) -> str:
    """What a mapping row's stored lock can do now: online, offline, not in the lock list, on another IQ."""
    if mapping.pk is None:
        return ""
    # The rows come from the integration's related manager: this is the page's integration, with its lock
    # list prefetched once for every row (IntegrationAdmin.get_queryset).
    integration = mapping.integration
    cached = _page_locks(integration)
    problem = mapping_problem(integration=integration, lock_id=mapping.lock_id, cached=cached)
    if problem:
        return format_html('<span class="mapping-flag">⚠ {}</span>', problem)
    lock = cached[mapping.lock_id]
    if not lock.iq_online:
        return mark_safe('<span class="mapping-flag" data-testid="lock-state">⚠ offline (its IQ is offline)</span>')
    if not lock.online:
        return mark_safe('<span class="mapping-flag" data-testid="lock-state">⚠ offline</span>')
    return mark_safe('<span class="lock-online" data-testid="lock-state">✔ online</span>')


def bulk_select_html(mapping: LockMapping) -> str:
    """A stored row's checkbox for "clear a selection"."""
    if mapping.pk is None:
        return ""
    # Belongs to the "clear a selection" form outside the change form, so ticking it never saves anything.
    return format_html(
        '<input type="checkbox" form="{}" name="mapping" value="{}" class="mapping-select" aria-label="Select {}">',
        CLEAR_FORM_ID,
        mapping.pk,
        mapping,
    )


class MappingTabAdmin(admin.ModelAdmin[Integration]):
    """IntegrationAdmin's Mapping tab: which rows a page holds, the widgets' searches, the bulk previews."""

    def mapping_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        views = (
            ("objects", "mapping_objects", self.mapping_objects_view),
            ("locks", "mapping_locks", self.mapping_locks_view),
            ("same-name", "mapping_same_name", self.mapping_same_name_view),
            ("clear", "mapping_clear", self.mapping_clear_view),
        )
        return [
            path(
                f"<path:object_id>/mapping/{route}/",
                self.admin_site.admin_view(view),
                name="{}_{}_{}".format(*info, name),
            )
            for route, name, view in views
        ]

    def back_to_mapping_page(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """After "Save and continue editing", the same page of mapping rows the operator saved from."""
        params = _mapping_params(request.GET)
        if params and "_continue" in request.POST and response.get("Location") == request.path:
            response["Location"] = f"{request.path}?{params}"
        return response

    def _report(self, request: HttpRequest, outcome: Outcome) -> None:
        raise NotImplementedError  # IntegrationAdmin's, which words every outcome of the console alike

    def get_formset_kwargs(self, request: HttpRequest, obj: Integration, inline: Any, prefix: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, LockMappingInline):
            kwargs.update(self._mapping_formset_kwargs(request, obj, prefix))
        return kwargs

    def _mapping_formset_kwargs(self, request: HttpRequest, obj: Integration | None, prefix: str) -> dict[str, Any]:
        if obj is None or obj.pk is None:
            return {"queryset": LockMapping.objects.none()}
        page = mapping_page(integration=obj, query=_mapping_search(request.GET), page=request.GET.get(PAGE_PARAM, 1))
        # A save carries the rows its page showed: those, and only those, are the formset (whatever the URL
        # says now), so saving one page never touches the rows on another.
        ids = _posted_row_ids(request.POST, prefix) if request.method == "POST" else page.ids
        # From the integration's related manager: every row's integration is OBJ, with its prefetched lock list.
        rows = obj.mappings.filter(pk__in=ids).select_related("object__parent").order_by(*tree_ordering("object__"))
        return {
            "queryset": rows,
            "tab": MappingTab.of(obj, page, request.GET),
            "search_urls": {
                "object": _admin_url("mapping_objects", obj.pk),
                "lock_id": _admin_url("mapping_locks", obj.pk),
            },
        }

    def mapping_objects_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The object search of a mapping row: "Parent › Child" labels in tree order, and the wildcard."""
        if request.method not in ("GET",):
            return HttpResponseNotAllowed(["GET"])
        self._integration_to_change(request, object_id)
        text, number = _search_params(request)
        offset = (number - 1) * SEARCH_RESULTS_PER_PAGE
        found = list(objects_search(text=text)[offset : offset + SEARCH_RESULTS_PER_PAGE + 1])
        results = [{"id": str(obj.pk), "text": obj.label} for obj in found[:SEARCH_RESULTS_PER_PAGE]]
        if number == 1 and wildcard_matches(text):
            results.insert(0, {"id": WILDCARD_VALUE, "text": WILDCARD_LABEL})
        return JsonResponse({"results": results, "pagination": {"more": len(found) > SEARCH_RESULTS_PER_PAGE}})

    def mapping_locks_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The lock search of a mapping row: the integration's cached locks (GET locks) and whether they are online."""
        if request.method not in ("GET",):
            return HttpResponseNotAllowed(["GET"])
        integration = self._integration_to_change(request, object_id)
        text, number = _search_params(request)
        offset = (number - 1) * SEARCH_RESULTS_PER_PAGE
        found = list(
            cached_locks_search(integration=integration, text=text)[offset : offset + SEARCH_RESULTS_PER_PAGE + 1]
        )
        cached = {lock.lock_id: lock for lock in found}
        results = [
            {
                "id": lock.lock_id,
                "text": lock_choice_label(integration=integration, lock_id=lock.lock_id, cached=cached),
                "online": bool(lock.online and lock.iq_online),
                # select2 shows these greyed out: this integration's OTP is not accepted on another IQ.
                "disabled": bool(mapping_problem(integration=integration, lock_id=lock.lock_id, cached=cached)),
            }
            for lock in found[:SEARCH_RESULTS_PER_PAGE]
        ]
        return JsonResponse({"results": results, "pagination": {"more": len(found) > SEARCH_RESULTS_PER_PAGE}})

    def mapping_same_name_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Bulk: map objects to the locks with their names. GET previews; only the confirming POST changes."""
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        integration = self._integration_to_change(request, object_id)
        if request.method == "POST":
            outcome = mappings_map_same_name(integration_id=integration.pk, pairs=_posted_plan(request.POST))
            self._report(request, outcome)
            return HttpResponseRedirect(_change_url(integration, request.POST.get("q", "")))
        query = _clean_search(request.GET.get("q", ""))
        plan = same_name_plan(integration=integration, query=query)
        skipped = [
            (reason, plan.skipped[reason][:PREVIEW_ROWS_SHOWN], len(plan.skipped[reason])) for reason in SKIP_REASONS
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": integration,
            "title": "Map objects to locks with the same name",
            "query": query,
            "proposals": plan.proposals,
            "skipped": skipped,
            "skipped_count": plan.skipped_count,
            "plan_json": json.dumps([[match.object.pk, match.lock.lock_id] for match in plan.proposals]),
            "cancel_url": _change_url(integration, query),
        }
        return TemplateResponse(request, "admin/integrations/integration/mapping_same_name.html", context)

    def mapping_clear_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Bulk: clear the selected mapping rows. GET previews them; only the confirming POST deletes."""
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        integration = self._integration_to_change(request, object_id)
        if request.method == "POST":
            ids = _id_list(request.POST.get("ids", "").split(","))
            self._report(request, mappings_clear(integration_id=integration.pk, mapping_ids=ids))
            return HttpResponseRedirect(_change_url(integration, request.POST.get("q", "")))
        query = _clean_search(request.GET.get("q", ""))
        if request.GET.get("all"):
            rows = mapping_rows(integration=integration, query=query)
        else:
            wanted = _id_list(request.GET.getlist("mapping"))
            rows = integration.mappings.filter(pk__in=wanted).order_by(*tree_ordering("object__"))
        selected = list(rows.select_related("object__parent"))
        if not selected:
            self.message_user(request, "Tick the rows to clear on the Mapping tab first.", messages.WARNING)
            return HttpResponseRedirect(_change_url(integration, query))
        cached = cached_locks_by_id(integration=integration)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": integration,
            "title": "Clear mapping rows",
            "query": query,
            "rows": [
                (
                    row,
                    lock_choice_label(
                        integration=integration, lock_id=row.lock_id, cached=cached, fallback_name=row.lock_name
                    ),
                )
                for row in selected
            ],
            "ids": ",".join(str(row.pk) for row in selected),
            "left": integration.mappings.count() - len(selected),
            "cancel_url": _change_url(integration, query),
        }
        return TemplateResponse(request, "admin/integrations/integration/mapping_clear.html", context)

    def _integration_to_change(self, request: HttpRequest, object_id: str) -> Integration:
        """The integration of a mapping view, for users who may change it (403), that exists (404)."""
        integration = self.get_object(request, unquote(object_id))
        if integration is None:
            raise Http404("No such integration")
        if not self.has_change_permission(request, integration):
            raise PermissionDenied
        return integration


def _page_locks(integration: Integration) -> dict[str, Any]:
    """The integration's lock list by id, built once for all the rows of a page (they share the integration)."""
    memo: dict[str, Any] | None = integration.__dict__.get("_page_locks")
    if memo is None:
        memo = integration.__dict__["_page_locks"] = cached_locks_by_id(integration=integration)
    return memo


@dataclass(frozen=True)
class MappingTab:
    """What the Mapping tab shows around its rows: the search, where the page is, links to the others."""

    page: MappingPage
    query_param: str
    links: list[tuple[str, str | None]]  # (text, href); no href: the current page or a gap
    previous_url: str | None
    next_url: str | None
    same_name_url: str
    search_form: str = SEARCH_FORM_ID
    clear_form: str = CLEAR_FORM_ID

    @classmethod
    def of(cls, integration: Integration, page: MappingPage, params: QueryDict) -> MappingTab:
        def url(number: int) -> str:
            query = {SEARCH_PARAM: page.query} if page.query else {}
            return "?" + urlencode({**query, PAGE_PARAM: number}) + "#tab-mapping"

        links: list[tuple[str, str | None]] = []
        for number in _page_numbers(page.number, page.num_pages):
            if number is None:
                links.append(("…", None))
            else:
                links.append((str(number), None if number == page.number else url(number)))
        same_name = _admin_url("mapping_same_name", integration.pk)
        return cls(
            page=page,
            query_param=SEARCH_PARAM,
            links=links,
            previous_url=url(page.number - 1) if page.has_previous else None,
            next_url=url(page.number + 1) if page.has_next else None,
            same_name_url=same_name + ("?" + urlencode({"q": page.query}) if page.query else ""),
        )


def _page_numbers(current: int, last: int, *, around: int = 2) -> list[int | None]:
    """1 … 4 5 [6] 7 8 … 20: the first and last pages, the ones around the current page, None for a gap."""
    shown = sorted({1, last, *range(max(1, current - around), min(last, current + around) + 1)})
    numbers: list[int | None] = []
    for number in shown:
        if numbers and number - (numbers[-1] or 0) > 1:
            numbers.append(None)
        numbers.append(number)
    return numbers


def _clean_search(text: str) -> str:
    # NUL cannot be sent to PostgreSQL; it is nothing a person types into a search box either.
    return text.replace("\x00", "").strip()[:SEARCH_TEXT_MAX]


def _mapping_search(params: QueryDict) -> str:
    return _clean_search(params.get(SEARCH_PARAM, ""))


def _mapping_params(params: QueryDict) -> str:
    kept = {name: params[name] for name in (SEARCH_PARAM, PAGE_PARAM) if params.get(name)}
    return urlencode(kept)


def _posted_row_ids(data: QueryDict, prefix: str) -> list[int]:
    """The ids of the stored rows a Mapping tab save posted (its page), read as the formset will read them."""
    initial = parse_id(data.get(f"{prefix}-INITIAL_FORMS")) or 0
    ids = (parse_id(data.get(f"{prefix}-{index}-id")) for index in range(min(initial, 1000)))
    return [pk for pk in ids if pk is not None]


def _search_params(request: HttpRequest) -> tuple[str, int]:
    """The text and page of a search widget's request (select2 sends term and page); 400 on nonsense."""
    text = request.GET.get("term", request.GET.get("q", ""))
    if len(text) > SEARCH_TEXT_MAX or "\x00" in text:
        raise BadRequest("The search text is too long or holds a NUL character.")
    number = parse_id(request.GET.get("page") or "1")
    if number is None or not 1 <= number <= 10_000:
        raise BadRequest("page must be a whole number from 1.")
    return text.strip(), number


def _id_list(values: list[str]) -> list[int]:
    ids = [parse_id(value) for value in values if value.strip()]
    if any(pk is None for pk in ids) or len(ids) > 100_000:
        raise BadRequest("Row ids must be whole numbers.")
    return [pk for pk in ids if pk is not None]


def _posted_plan(data: QueryDict) -> list[tuple[int, str]]:
    """The (object id, lock id) pairs a "same name" preview showed and the operator confirmed; 400 on junk."""
    try:
        pairs = json.loads(data.get("plan", ""))
    except ValueError as error:
        raise BadRequest("The confirmed plan is not readable; preview again.") from error
    if not isinstance(pairs, list) or len(pairs) > 100_000:
        raise BadRequest("The confirmed plan is not readable; preview again.")
    plan: list[tuple[int, str]] = []
    for pair in pairs:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], int)
            and not isinstance(pair[0], bool)
            and isinstance(pair[1], str)
        ):
            raise BadRequest("The confirmed plan is not readable; preview again.")
        plan.append((pair[0], pair[1]))
    return plan


def _admin_url(name: str, pk: int) -> str:
    return reverse(f"admin:integrations_integration_{name}", args=[pk])


def _change_url(integration: Integration, query: str = "") -> str:
    search = _clean_search(query)
    params = "?" + urlencode({SEARCH_PARAM: search}) if search else ""
    return f"{_admin_url('change', integration.pk)}{params}#tab-mapping"
