"""Reads: the policy's plain facts and the integration of a booking (opening), and what the console shows.

Selectors take what they need as arguments where a caller renders many rows, so a list costs no query per row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.core.paginator import Paginator
from django.db.models import OuterRef, Prefetch, Q, QuerySet, Subquery, prefetch_related_objects
from django.db.models.functions import Lower
from django.utils import timezone

from bookings.models import BookableObject, Booking
from bookings.selectors import label_search, label_search_terms, objects_as_tree, objects_search, tree_ordering
from integrations.models import CachedLock, Integration, LockMapping, OpenAttempt, OpenRequest
from integrations.outcomes import Outcome
from integrations.policy import (
    BookingFacts,
    Decision,
    IntegrationFacts,
    LockFacts,
    MappingFacts,
    Rule,
    decide,
    resolve_lock,
)
from locks.clock import ClockReading, known_offset
from locks.environments import endpoints_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenAssessment:
    integration: Integration | None
    decision: Decision
    booking_id: int | None = None


def booking_facts(*, booking: Booking) -> BookingFacts:
    obj = booking.object
    parent = obj.parent
    return BookingFacts(
        status_id=booking.status_id,
        status_label=str(booking.status),
        object_id=obj.pk,
        object_name=obj.label,
        parent_id=parent.pk if parent is not None else None,
        parent_name=parent.name if parent is not None else None,
        start=booking.start,
        end=booking.end,
    )


def integration_facts(*, integration: Integration) -> IntegrationFacts:
    return IntegrationFacts(
        name=integration.name,
        is_active=integration.is_active,
        is_activated=integration.is_activated,
        needs_reactivation=integration.needs_reactivation,
        reactivation_reason=integration.reactivation_reason,
        # all(): uses prefetched statuses when the caller prefetched them (OpenAssessor does).
        open_status_ids=frozenset(status.pk for status in integration.open_statuses.all()),
        minutes_before=integration.minutes_before,
        iq_id=integration.iq_id,
    )


# ADR 0005 decision 3 across integrations (ADR 0002, point 11): the most specific mapping wins, whichever
# active integration holds it.
_RULE_RANK = {Rule.OBJECT: 0, Rule.PARENT: 1, Rule.WILDCARD: 2}


class OpenAssessor:
    """Answers "would this booking open a door now, which one, via which rule, or why not" for many bookings.

    The integrations with their statuses, mappings and cached locks are read once (four queries), so a list
    of bookings costs no query per booking beyond what the bookings themselves need. `for_booking` reads only
    what one booking's answer can depend on (see there).
    """

    def __init__(
        self,
        *,
        now: datetime | None = None,
        integrations: list[Integration] | None = None,
        mappings: Iterable[LockMapping] | None = None,
        locks: Iterable[CachedLock] | None = None,
    ) -> None:
        self.now = now or timezone.now()
        if integrations is None:
            integrations = list(Integration.objects.order_by("-is_active", "name").prefetch_related("open_statuses"))
            mappings = LockMapping.objects.all()
            locks = CachedLock.objects.all()
        self.integrations = integrations
        self._mappings: dict[int, list[MappingFacts]] = {i.pk: [] for i in self.integrations}
        for m in mappings or ():
            self._mappings.setdefault(m.integration_id, []).append(
                MappingFacts(object_id=m.object_id, lock_id=m.lock_id, lock_name=m.lock_name)
            )
        self._locks: dict[int, dict[str, LockFacts]] = {i.pk: {} for i in self.integrations}
        for lock in locks or ():
            self._locks.setdefault(lock.integration_id, {})[lock.lock_id] = LockFacts(
                lock_id=lock.lock_id, name=lock.name, online=lock.online, iq_id=lock.iq_id, iq_online=lock.iq_online
            )
        self._facts = {i.pk: integration_facts(integration=i) for i in self.integrations}

    @classmethod
    def for_booking(cls, booking: Booking, *, now: datetime | None = None) -> OpenAssessor:
        """An assessor that read only what BOOKING's answer depends on, the same rows whatever the data size.

        The mappings of its object, its parent and the wildcards (with the integration each belongs to and the
        cached state of the lock each names, in one query); the open statuses of those integrations; and only
        when none of them is active, the one integration a refusal names. Two queries, three at most.
        """
        scope = [booking.object_id] + ([booking.object.parent_id] if booking.object.parent_id else [])
        lock_of = CachedLock.objects.filter(integration_id=OuterRef("integration_id"), lock_id=OuterRef("lock_id"))
        mappings = list(
            LockMapping.objects.filter(Q(object_id__in=scope) | Q(object__isnull=True))
            # The integration's check-in status and last-open field too: an open writes them right after.
            .select_related("integration__checkin_status", "integration__last_open_field")
            .annotate(
                cached_name=Subquery(lock_of.values("name")[:1]),
                cached_online=Subquery(lock_of.values("online")[:1]),
                cached_iq_id=Subquery(lock_of.values("iq_id")[:1]),
                cached_iq_online=Subquery(lock_of.values("iq_online")[:1]),
            )
        )
        concerned = {m.integration_id: m.integration for m in mappings}
        if not any(integration.is_active for integration in concerned.values()):
            # No active integration maps this booking: the refusal names the integration a full read would.
            named = Integration.objects.order_by("-is_active", "name").first()
            if named is not None:
                concerned.setdefault(named.pk, named)
        integrations = sorted(concerned.values(), key=lambda i: (not i.is_active, i.name))
        prefetch_related_objects(integrations, "open_statuses")
        assessor = cls(now=now, integrations=integrations, mappings=mappings, locks=())
        for m in mappings:
            if m.cached_name is not None:  # type: ignore[attr-defined]
                assessor._locks[m.integration_id][m.lock_id] = LockFacts(
                    lock_id=m.lock_id,
                    name=m.cached_name,  # type: ignore[attr-defined]
                    online=m.cached_online,  # type: ignore[attr-defined]
                    iq_id=m.cached_iq_id,  # type: ignore[attr-defined]
                    iq_online=m.cached_iq_online,  # type: ignore[attr-defined]
                )
        return assessor

    def integration_for(self, facts: BookingFacts) -> Integration | None:
        """Among active integrations, the one with the most specific mapping for the booked object: its own,
        else its parent's, else a wildcard (activation lets one active integration map an object, and one
        have a wildcard, so the answer is unique). Failing that any active one, then any, so a refusal names it.
        """
        ranked = []
        for integration in self.integrations:
            choice = resolve_lock(booking=facts, mappings=self._mappings[integration.pk])
            if integration.is_active and choice is not None:
                ranked.append((_RULE_RANK[Rule(choice.rule)], integration.name, integration))
        if ranked:
            return min(ranked, key=lambda item: item[:2])[2]
        return self.integrations[0] if self.integrations else None

    def assess(self, booking: Booking) -> OpenAssessment:
        facts = booking_facts(booking=booking)
        tz = timezone.get_default_timezone()
        integration = self.integration_for(facts)
        if integration is None:
            return OpenAssessment(
                None,
                decide(integration=None, booking=facts, mappings=[], locks={}, now=self.now, tz=tz),
                booking.pk,
            )
        decision = decide(
            integration=self._facts[integration.pk],
            booking=facts,
            mappings=self._mappings[integration.pk],
            locks=self._locks[integration.pk],
            now=self.now,
            tz=tz,
        )
        return OpenAssessment(integration, decision, booking.pk)


def opens_automatically(*, assessment: OpenAssessment, status_id: int) -> bool:
    """Whether entering STATUS_ID asks the assessed integration for an open (ADR 0005, decision 1a).

    The integration that would actually open the door decides, with its own switch and statuses; an inactive
    one records nothing (ADR 0002, point 5). The open statuses are prefetched by the OpenAssessor.
    """
    integration = assessment.integration
    if integration is None or not integration.is_active or not integration.open_on_status_change:
        return False
    return any(status.pk == status_id for status in integration.open_statuses.all())


def booking_open_assessment(*, booking: Booking, now: datetime | None = None) -> OpenAssessment:
    """Would BOOKING open a door NOW, which one and via which rule, or why not (reading only its own rows)."""
    return OpenAssessor.for_booking(booking, now=now).assess(booking)


def sends_in_order() -> Prefetch:
    """Prefetch an open request's sends by number, from their own table only.

    OpenAttempt's default order starts with its open request, which means the open request's own order: the
    prefetch then joins every open request there is (a full scan per list, whatever the page shows).
    """
    return Prefetch("sends", queryset=OpenAttempt.objects.order_by("open_request_id", "number"))


def open_requests_for_booking(*, booking: Booking, limit: int = 20) -> QuerySet[OpenRequest]:
    return (
        OpenRequest.objects.filter(booking=booking)
        .select_related("actor", "integration")
        .prefetch_related(sends_in_order())
    )[:limit]


def open_requests_recent(*, integration: Integration, limit: int = 25) -> QuerySet[OpenRequest]:
    return (
        OpenRequest.objects.filter(integration=integration)
        .select_related("booking", "actor")
        .prefetch_related(sends_in_order())[:limit]
    )


# --- The console -----------------------------------------------------------------------------------------


def cached_locks_by_id(*, integration: Integration) -> dict[str, CachedLock]:
    """The integration's cached lock list (as GET locks left it), keyed by lock id; empty when not saved yet."""
    if integration.pk is None:
        return {}
    # all(): uses prefetched locks when the caller prefetched them (the admin does, once for every row).
    return {lock.lock_id: lock for lock in integration.cached_locks.all()}


def mapping_target_label(mapping: LockMapping) -> str:
    return "* (wildcard)" if mapping.object_id is None else mapping.object.label  # type: ignore[union-attr]


def mapping_problem(*, integration: Integration, lock_id: str, cached: dict[str, CachedLock]) -> str:
    """Why a mapping to LOCK_ID cannot be used right now ("" if it can), judged from the CACHED lock list."""
    lock = cached.get(lock_id)
    if lock is None:
        return "not in the lock list — click GET locks (and map another lock if it is gone)"
    if integration.iq_id and lock.iq_id and lock.iq_id != integration.iq_id:
        return "on another IQ — this integration's OTP is not accepted there"
    return ""


def activation_missing_steps(
    *, integration: Integration, mappings: Sequence[tuple[int | None, str]] | None = None
) -> list[str]:
    """Every step still missing before INTEGRATION may be active, in the manual's order.

    MAPPINGS are (object id or None for the wildcard, lock id) pairs; by default the stored ones (the
    change form passes the rows being saved, so mapping and activating can happen in one save).
    """
    if mappings is None:
        mappings = list(integration.mappings.values_list("object_id", "lock_id"))
    steps: list[str] = []
    if not integration.site_id:
        steps.append("Site resolved: click Resolve site ID on the Authentication tab.")
    if not integration.access_test_ok:
        steps.append("Access tested OK: click Test / request access on the Authentication tab.")
    if integration.needs_reactivation:
        reason = f" ({integration.reactivation_reason})" if integration.reactivation_reason else ""
        steps.append(f"IQ activated: the IQ needs re-activation{reason}; use GET PIN and Set PIN again.")
    elif not integration.is_activated:
        steps.append("IQ activated: use GET PIN and Set PIN in the IQ OTP setup block until “IQ is activated”.")
    if not mappings:
        steps.append("At least one mapping: click GET locks and map an object (or the wildcard) on the Mapping tab.")
    else:
        cached = cached_locks_by_id(integration=integration)
        for _object_id, lock_id in mappings:
            problem = mapping_problem(integration=integration, lock_id=lock_id, cached=cached)
            if problem:
                lock = cached.get(lock_id)
                steps.append(f"Mapping to lock {lock.name if lock else lock_id}: {problem}.")
        object_ids = [object_id for object_id, _ in mappings]
        steps.extend(mapping_conflicts(integration=integration, object_ids=object_ids))
    return steps


def mapping_conflicts(*, integration: Integration, object_ids: Iterable[int | None]) -> list[str]:
    """Mappings among OBJECT_IDS (None: the wildcard) that another *active* integration already has.

    An object may be mapped by at most one active integration, and at most one active integration may have
    a wildcard: otherwise which door a booking opens would depend on which integration is asked.
    """
    wanted = list(object_ids)
    others = LockMapping.objects.filter(integration__is_active=True).exclude(integration_id=integration.pk)
    conflicts = [
        f"{m.object.label} is already mapped by the active integration “{m.integration.name}”; "  # type: ignore[union-attr]
        "an object may be mapped by at most one active integration."
        for m in objects_mapped_by_other_active(integration=integration, object_ids=wanted)
    ]
    if None in wanted:
        conflicts += [
            f"The active integration “{m.integration.name}” already has a wildcard (default) mapping; "
            "at most one active integration may have one."
            for m in others.filter(object__isnull=True).select_related("integration")
        ]
    return conflicts


def objects_mapped_by_other_active(*, integration: Integration, object_ids: Iterable[int | None]) -> list[LockMapping]:
    """The mappings of another *active* integration for any of OBJECT_IDS (the wildcard aside), by object name."""
    wanted = [object_id for object_id in object_ids if object_id is not None]
    if not wanted:
        return []
    others = LockMapping.objects.filter(integration__is_active=True).exclude(integration_id=integration.pk)
    return list(
        others.filter(object_id__in=wanted).select_related("object__parent", "integration").order_by("object__name")
    )


def details_warnings(*, integration: Integration) -> list[Outcome]:
    """What in the saved Details would surprise staff later (the Details are valid either way)."""
    checkin = integration.checkin_status
    if checkin is None or integration.open_statuses.filter(pk=checkin.pk).exists():
        return []
    return [
        Outcome.warning(
            f"Status after opening (check-in) “{checkin}” is not ticked under Lock may open from status: once a "
            "booking is checked in, its door will not open again (guests going in and out). Tick it too if it should."
        )
    ]


def salto_clock_of(*, integration: Integration) -> ClockReading | None:
    """The last measured offset of Salto's clock in the integration's environment (None: not measured yet)."""
    if not integration.environment:
        return None
    try:
        return known_offset(cache, endpoints_for(integration.environment).api_url)
    except Exception:
        # The console must render with the cache down; the clock line is then simply not shown.
        logger.warning("Salto clock offset not readable from the cache", exc_info=True)
        return None


# --- The Mapping tab at scale: its pages, the searches behind its widgets, the bulk "same name" plan ---------

MAPPING_PAGE_SIZE = 50
WILDCARD_SEARCH = ("*", "wildcard", "default")


@dataclass(frozen=True)
class MappingPage:
    """Which of an integration's mapping rows the Mapping tab shows (and so saves): one page of a search."""

    query: str
    number: int
    num_pages: int
    count: int  # rows matching the query
    total: int  # all the integration's rows
    ids: list[int]
    first_index: int  # position of the page's first row, 1-based (0: no rows)
    last_index: int

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.num_pages


def mapping_rows(*, integration: Integration, query: str = "") -> QuerySet[LockMapping]:
    """The integration's mappings whose object or lock matches QUERY: the wildcard first, then in tree order.

    The rows come from the integration's related manager, so each row's `integration` is INTEGRATION itself
    (with whatever the caller prefetched on it, such as its lock list) rather than one more query per row.
    """
    rows = integration.mappings.all()
    text = query.strip()
    if text:
        locks_named = CachedLock.objects.filter(integration=integration, name__icontains=text).values("lock_id")
        matches = Q(lock_name__icontains=text) | Q(lock_id__iexact=text) | Q(lock_id__in=locks_named)
        terms = label_search_terms(text)
        if terms:
            matches |= label_search(terms, "object__")
        if wildcard_matches(text):
            matches |= Q(object__isnull=True)
        rows = rows.filter(matches)
    return rows.order_by(*tree_ordering("object__"))


def mapping_page(
    *, integration: Integration, query: str = "", page: str | int = 1, per_page: int = MAPPING_PAGE_SIZE
) -> MappingPage:
    """Page PAGE of the rows matching QUERY (a page number that is not one shows the first page, past the end
    the last): two queries, three with a query (the integration's total then differs from the count)."""
    if integration.pk is None:
        return MappingPage(query, 1, 1, 0, 0, [], 0, 0)
    rows = mapping_rows(integration=integration, query=query)
    paginator = Paginator(rows.values_list("pk", flat=True), per_page)
    current = paginator.get_page(page)
    ids = list(current.object_list)
    total = integration.mappings.count() if query.strip() else paginator.count
    return MappingPage(
        query=query,
        number=current.number,
        num_pages=paginator.num_pages,
        count=paginator.count,
        total=total,
        ids=ids,
        first_index=current.start_index(),
        last_index=current.end_index(),
    )


def cached_locks_search(*, integration: Integration, text: str = "") -> QuerySet[CachedLock]:
    """The integration's cached locks whose name contains every word of TEXT (or whose id is TEXT), by name."""
    locks = CachedLock.objects.filter(integration=integration)
    for word in text.split():
        locks = locks.filter(Q(name__icontains=word) | Q(lock_id__iexact=word))
    return locks.order_by(Lower("name"), "lock_id")


def wildcard_matches(text: str) -> bool:
    """Whether a search for TEXT should offer the wildcard (default) row too."""
    words = text.strip().lower()
    return not words or any(word.startswith(words) for word in WILDCARD_SEARCH)


# Why the bulk "same name" action leaves an object alone, in the order the preview lists them.
SKIP_ALREADY_MAPPED = "already mapped"
SKIP_OTHER_INTEGRATION = "mapped by another active integration"
SKIP_NO_LOCK = "no lock of that name"
SKIP_AMBIGUOUS = "ambiguous"
SKIP_UNUSABLE = "the lock of that name cannot be mapped"
SKIP_REASONS = (SKIP_ALREADY_MAPPED, SKIP_OTHER_INTEGRATION, SKIP_AMBIGUOUS, SKIP_UNUSABLE, SKIP_NO_LOCK)


@dataclass(frozen=True)
class NameMatch:
    object: BookableObject
    lock: CachedLock


@dataclass(frozen=True)
class NameSkip:
    object: BookableObject
    detail: str


@dataclass(frozen=True)
class SameNamePlan:
    """What "map objects to locks with the same name" would do now: proposals, and what it skips and why."""

    proposals: list[NameMatch]
    skipped: dict[str, list[NameSkip]]  # a reason of SKIP_REASONS → its objects (every reason present)

    @property
    def skipped_count(self) -> int:
        return sum(len(rows) for rows in self.skipped.values())


def comparable_name(name: str) -> str:
    """Names compare without case and with runs of spaces as one ("Unit  12" is "unit 12")."""
    return " ".join(name.casefold().split())


def same_name_plan(*, integration: Integration, query: str = "") -> SameNamePlan:
    """For each active object without a mapping here whose label matches QUERY, the cached lock of its name.

    A sub-object matches a lock named like its whole label ("Building A › Studio 2") first, else like its own
    name, unless another object has that name too (then it is ambiguous, as is a name that several locks share).
    The rules of a mapping row hold: a lock that `mapping_problem` rejects is skipped, and so is an object that
    another active integration maps (`objects_mapped_by_other_active`). A constant number of queries.
    """
    everything = objects_as_tree()
    candidates = everything
    if query.strip():
        wanted = set(objects_search(text=query).values_list("pk", flat=True))
        candidates = [obj for obj in everything if obj.pk in wanted]
    cached = cached_locks_by_id(integration=integration)
    locks_by_name: dict[str, list[CachedLock]] = {}
    for lock in cached.values():
        locks_by_name.setdefault(comparable_name(lock.name), []).append(lock)
    name_counts: dict[str, int] = {}
    for obj in everything:
        key = comparable_name(obj.name)
        name_counts[key] = name_counts.get(key, 0) + 1
    mapped_here = dict(integration.mappings.filter(object__isnull=False).values_list("object_id", "lock_name"))
    elsewhere = {
        m.object_id: m.integration.name
        for m in objects_mapped_by_other_active(integration=integration, object_ids=[o.pk for o in candidates])
    }

    proposals: list[NameMatch] = []
    skipped: dict[str, list[NameSkip]] = {reason: [] for reason in SKIP_REASONS}
    for obj in candidates:
        if obj.pk in mapped_here:
            skipped[SKIP_ALREADY_MAPPED].append(NameSkip(obj, f"mapped to “{mapped_here[obj.pk] or '?'}”"))
            continue
        if obj.pk in elsewhere:
            skipped[SKIP_OTHER_INTEGRATION].append(NameSkip(obj, f"by “{elsewhere[obj.pk]}”"))
            continue
        by_label = locks_by_name.get(comparable_name(obj.label), []) if obj.parent_id else []
        by_name = locks_by_name.get(comparable_name(obj.name), [])
        matches = by_label or by_name
        if not matches:
            wanted_names = f"“{obj.name}” or “{obj.label}”" if obj.parent_id else f"“{obj.name}”"
            skipped[SKIP_NO_LOCK].append(NameSkip(obj, f"no lock is named {wanted_names}"))
        elif len(matches) > 1:
            skipped[SKIP_AMBIGUOUS].append(NameSkip(obj, f"{len(matches)} locks are named “{matches[0].name}”"))
        elif not by_label and name_counts[comparable_name(obj.name)] > 1:
            skipped[SKIP_AMBIGUOUS].append(
                NameSkip(obj, f"{name_counts[comparable_name(obj.name)]} objects are named “{obj.name}”")
            )
        elif problem := mapping_problem(integration=integration, lock_id=matches[0].lock_id, cached=cached):
            skipped[SKIP_UNUSABLE].append(NameSkip(obj, f"“{matches[0].name}” is {problem}"))
        else:
            proposals.append(NameMatch(obj, matches[0]))
    return SameNamePlan(proposals, skipped)
