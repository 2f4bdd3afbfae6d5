"""Asking Salto's entries whether a door opened: for a send whose answer was lost, and after every open.

A remote open leaves an entry in the site's entries (`event_category` lock_opened, `access_by` remote, the
account's platform user id as `user_id`: docs/salto-ks.md §8). Entries are the door's own record, so:
- an unconfirmed request (the send may or may not have acted) is settled by them: found → opened, never sent
  again; not found within the grace period and still fresh → sent again; otherwise not opened;
- an opened request is checked too (OPEN_CONFIRM_OPENS): confirmed, "Salto has no record of this open", or a
  double open when more than one entry belongs to it.
Entries may lag behind the open (OPEN_ENTRIES_GRACE_SECONDS); an entry is matched to one request only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Max, Min
from django.db.models.functions import Coalesce
from django.utils import timezone

from integrations.models import Integration, OpenAttempt, OpenRequest
from integrations.salto import client_for
from locks.client import SaltoClient
from locks.errors import SaltoError
from locks.schemas import Entry

logger = logging.getLogger(__name__)

State = OpenRequest.State
Confirmation = OpenRequest.Confirmation

# Salto's entry time and our send time come from two clocks, whose offset is measured to about a second
# (locks/clock.py), and the entry's time may be the lock's: an entry may seem this far outside its send.
ENTRY_MARGIN_SECONDS = 3.0
# Sends and entries this long before a request's first send are matched too, so an earlier request's open
# (its answer lost, its entry late) is not taken for this one.
LOOK_BACK = timedelta(seconds=60)
# An unconfirmed request whose entries cannot be read gives up this long after its freshness limit.
UNCONFIRMED_GIVE_UP_SECONDS = 600.0


def grace() -> timedelta:
    return timedelta(seconds=settings.OPEN_ENTRIES_GRACE_SECONDS)


@dataclass(frozen=True)
class EntriesSeen:
    mine: list[Entry]  # the remote opens matched to this request's sends
    nearby: list[Entry]  # other remote opens of the lock since this request's first send (another's, or unsure)


def remote_opens_of(open_request: OpenRequest, client: SaltoClient) -> EntriesSeen:
    """Salto's entries that record this request's remote open(s) of its lock, oldest first.

    Entries carry no request id, and several requests may open one lock seconds apart (a wildcard lock, a
    burst). So the remote opens of the lock by this account are matched to the sends that may have caused
    them, in order (Salto acts on requests as they arrive): each entry goes to the earliest send whose window
    holds it (from ENTRY_MARGIN_SECONDS before the send to the margin after its answer; for a lost answer, to
    the grace period after it) and that has no entry yet, sends Salto accepted first; an entry left over goes
    to the one request whose windows hold it (a double open). `nearby` are the lock's other remote opens since
    this request's first send that no accepted send explains: a request that has none of its own must not be sent
    again while one is there (it may be its own late open).
    """
    integration = open_request.integration
    assert integration is not None
    # One call first: this client's own fresh reading of Salto's clock (never a stale cached one), and the
    # account's platform user id, which its entries carry.
    user_id = _account_user_id(integration, client)
    offset = timedelta(seconds=client.clock.offset_seconds if client.clock is not None else 0.0)
    first_sent = OpenAttempt.objects.filter(open_request=open_request).aggregate(first=Min("sent_at"))["first"]
    start = first_sent or open_request.created_at
    since = start - LOOK_BACK
    # Asked in Salto's time (our moment plus the measured offset), widely: the match below is done here.
    entries = client.list_entries(integration.site_id, since=since + offset - LOOK_BACK, lock_id=open_request.lock_id)
    remote_opens = sorted(
        (
            e
            for e in entries
            if e.event_category == "lock_opened"
            and e.access_by in (None, "remote")
            and (not user_id or not e.user_id or e.user_id == user_id)
        ),
        key=lambda e: e.utc_date_time,
    )
    sends = list(
        OpenAttempt.objects.filter(
            open_request__integration=integration,
            open_request__lock_id=open_request.lock_id,
            sent_at__gte=since,
            outcome__in=[OpenAttempt.Outcome.ACCEPTED, OpenAttempt.Outcome.UNCLEAR],
        ).order_by("sent_at", "pk")
    )
    owner, certain = _match_in_order(remote_opens, sends, offset=offset)
    margin = timedelta(seconds=ENTRY_MARGIN_SECONDS)
    mine = [e for e in remote_opens if owner.get(e.id) == open_request.pk]
    # An entry that a send Salto accepted explains is that request's; one that nobody's accepted send explains
    # may be this request's own late open.
    nearby = [
        e
        for e in remote_opens
        if owner.get(e.id) != open_request.pk
        and e.id not in certain
        and _aware(e.utc_date_time) - offset >= start - margin
    ]
    return EntriesSeen(mine=mine, nearby=nearby)


def _window(send: OpenAttempt) -> tuple[datetime, datetime]:
    margin = timedelta(seconds=ENTRY_MARGIN_SECONDS)
    ended = send.answered_at or send.sent_at
    if send.outcome == OpenAttempt.Outcome.UNCLEAR:
        # Salto may have acted any time until the answer was given up on, and its entry may lag.
        return send.sent_at - margin, ended + margin + grace()
    return send.sent_at - margin, ended + margin


def _match_in_order(
    entries: list[Entry], sends: list[OpenAttempt], *, offset: timedelta
) -> tuple[dict[str, int], set[str]]:
    """Entry id → the open request whose send caused it (see remote_opens_of), and the ids an accepted send explains."""
    owner: dict[str, int] = {}
    certain: set[str] = set()
    used: set[int] = set()
    for outcome in (OpenAttempt.Outcome.ACCEPTED, OpenAttempt.Outcome.UNCLEAR):
        for entry in entries:
            if entry.id in owner:
                continue
            at_ours = _aware(entry.utc_date_time) - offset
            for send in sends:
                low, high = _window(send)
                if send.outcome != outcome or send.pk in used or not low <= at_ours <= high:
                    continue
                owner[entry.id] = send.open_request_id
                used.add(send.pk)
                if outcome == OpenAttempt.Outcome.ACCEPTED:
                    certain.add(entry.id)
                break
    # An entry left over (more opens than sends: Salto acted twice on one command) belongs to the one request
    # whose sends' windows hold it, so a double open is shown where it happened; when several requests' windows
    # hold it (a burst, or opens by the same account outside the product), it is nobody's.
    for entry in entries:
        if entry.id not in owner:
            at_ours = _aware(entry.utc_date_time) - offset
            holding = {send.open_request_id for send in sends if _window(send)[0] <= at_ours <= _window(send)[1]}
            if len(holding) == 1:
                owner[entry.id] = holding.pop()
    return owner, certain


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _account_user_id(integration: Integration, client: SaltoClient) -> str:
    # Reference: GET /v1.1/me (docs/salto-ks.md §8): the platform id that entries carry as user_id.
    me = client.get_me()
    if me.id != integration.salto_user_id:
        Integration.objects.filter(pk=integration.pk).update(salto_user_id=me.id)
        integration.salto_user_id = me.id
    return me.id


def _entry_ids(entries: Iterable[Entry]) -> list[str]:
    return [e.id for e in entries]


def _salto_local(entry: Entry) -> str:
    return f"{timezone.localtime(_aware(entry.utc_date_time)):%H:%M:%S}"


# --- an unconfirmed request --------------------------------------------------------------------------------


def entries_verdict(open_request: OpenRequest) -> tuple[EntriesSeen | None, str]:
    """The entries recording this request's open (None when they could not be read, with the reason)."""
    integration = open_request.integration
    if integration is None:
        return None, "the request has no integration"
    try:
        with client_for(integration) as client:
            return remote_opens_of(open_request, client), ""
    except SaltoError as exc:
        return None, str(exc)
    except Exception as exc:
        # Not knowing is an answer here too: the caller keeps the request unconfirmed and gives up in time.
        logger.exception("Open request %s: entries could not be checked", open_request.pk)
        return None, f"internal error ({type(exc).__name__})"


def last_send(open_request: OpenRequest) -> datetime | None:
    """When the last send ended (its answer came or was given up on): the grace period counts from there."""
    last = OpenAttempt.objects.filter(open_request=open_request).aggregate(
        last=Max(Coalesce("answered_at", "sent_at"))
    )["last"]
    return last  # type: ignore[no-any-return]


def opened_reason(entries: list[Entry]) -> str:
    first = entries[0]
    text = f"Confirmed by Salto's entries at {_salto_local(first)}: the lock opened (the answer to the send was lost)."
    if len(entries) > 1:
        text += f" Salto recorded {len(entries)} opens for this request (a double open)."
    return text


def confirmation_of(entries: list[Entry]) -> str:
    return Confirmation.DOUBLE if len(entries) > 1 else Confirmation.CONFIRMED


# --- an opened request --------------------------------------------------------------------------------------


def open_request_confirm(*, open_request_id: int) -> float | None:
    """Check an opened request against Salto's entries; seconds until the next look, or None when settled."""
    open_request = OpenRequest.objects.select_related("integration").filter(pk=open_request_id).first()
    if open_request is None or open_request.state != State.OPENED or open_request.integration is None:
        return None
    if open_request.confirmation in (Confirmation.CONFIRMED, Confirmation.DOUBLE):
        return None
    seen, problem = entries_verdict(open_request)
    entries = seen.mine if seen is not None else None
    now = timezone.now()
    opened_at = open_request.finished_at or now
    if entries:
        OpenRequest.objects.record_confirmation(
            open_request.pk, confirmation=confirmation_of(entries), entry_ids=_entry_ids(entries), now=now
        )
        if len(entries) > 1:
            logger.error("Open request %s: Salto recorded %s opens (double open)", open_request.pk, len(entries))
        return None
    if now < opened_at + grace():
        return float(settings.OPEN_ENTRIES_POLL_SECONDS)
    if entries is None:
        # Salto's entries could not be read: say nothing rather than something untrue; try again later.
        logger.warning("Open request %s: entries not readable (%s); confirmation postponed", open_request.pk, problem)
        if now < opened_at + grace() + timedelta(seconds=UNCONFIRMED_GIVE_UP_SECONDS):
            return float(settings.OPEN_ENTRIES_POLL_SECONDS) * 10
        return None
    OpenRequest.objects.record_confirmation(open_request.pk, confirmation=Confirmation.NO_RECORD, entry_ids=[], now=now)
    logger.error("Open request %s: Salto has no record of this open", open_request.pk)
    return None
