"""Filters of the Mapping tab's rows template (templates/admin/integrations/integration/mapping_rows.html)."""

from __future__ import annotations

from django import template

from integrations.admin_mapping import bulk_select_html, lock_state_html
from integrations.models import LockMapping

register = template.Library()


@register.filter
def lock_state(mapping: LockMapping) -> str:
    return lock_state_html(mapping)


@register.filter
def bulk_select(mapping: LockMapping) -> str:
    return bulk_select_html(mapping)
