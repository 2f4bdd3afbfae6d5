"""Bulk changes to an integration's mappings, each confirmed by the operator after a preview.

The preview and the confirmation are two requests: anything may change between them (GET locks, another
operator, another integration activated). So each confirmation is judged again, inside one transaction that
holds the integration row, by the same reads the preview used (`same_name_plan`, which applies the rules of a
mapping row); what no longer holds is left out and said, never forced in. History rows record who did it
(simple_history's middleware knows the request's user).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from simple_history.utils import bulk_create_with_history

from integrations.models import Integration, LockMapping
from integrations.outcomes import Outcome
from integrations.selectors import same_name_plan


def mappings_map_same_name(*, integration_id: int, pairs: Iterable[tuple[int, str]]) -> Outcome:
    """Map each confirmed (object id, lock id) pair that the "same name" plan still proposes, as it proposes it."""
    confirmed = dict(pairs)
    with transaction.atomic():
        integration = Integration.objects.select_for_update().get(pk=integration_id)
        plan = same_name_plan(integration=integration)
        rows = [
            LockMapping(
                integration=integration, object=match.object, lock_id=match.lock.lock_id, lock_name=match.lock.name
            )
            for match in plan.proposals
            if confirmed.get(match.object.pk) == match.lock.lock_id
        ]
        bulk_create_with_history(rows, LockMapping)
    stale = len(confirmed) - len(rows)
    message = f"Mapped {len(rows)} object{'s' if len(rows) != 1 else ''} to the lock with its name."
    if stale:
        return Outcome.warning(
            message,
            [f"{stale} of the previewed rows no longer held (mapped or changed since the preview) and were left out."],
        )
    return Outcome.success(message)


def mappings_clear(*, integration_id: int, mapping_ids: Iterable[int]) -> Outcome:
    """Delete the integration's mapping rows among MAPPING_IDS (ids of other integrations are ignored)."""
    wanted = set(mapping_ids)
    with transaction.atomic():
        integration = Integration.objects.select_for_update().get(pk=integration_id)
        # One by one under the hood (Django sends post_delete per row), so every row leaves a history record.
        _total, by_model = integration.mappings.filter(pk__in=wanted).delete()
        deleted = by_model.get(LockMapping._meta.label, 0)
        left = integration.mappings.exists()
    message = f"Cleared {deleted} mapping row{'s' if deleted != 1 else ''}."
    details = []
    if deleted < len(wanted):
        details.append(f"{len(wanted) - deleted} of the selected rows were already gone.")
    if integration.is_active and not left:
        details.append(
            f"“{integration.name}” is active but has no mapping left: no door opens for its bookings until one is "
            "mapped again."
        )
        return Outcome.warning(message, details)
    return Outcome.success(message, details) if not details else Outcome.warning(message, details)
