"""Several integrations: the most specific mapping decides the door, whichever integration holds it."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.models import Integration, LockMapping
from integrations.selectors import activation_missing_steps, booking_open_assessment
from tests.integrations.opening.builders import World, make_booking, make_world

pytestmark = pytest.mark.django_db


def second_integration(world: World, *, name: str, **fields: Any) -> Integration:
    """A copy of the world's integration (same site, activated, active) under another name."""
    source = world.integration
    values = {
        f.name: getattr(source, f.name)
        for f in Integration._meta.concrete_fields
        if f.name not in ("id", "name", "created_at", "updated_at")
    }
    integration = Integration.objects.create(**{**values, "name": name, **fields})
    integration.open_statuses.set(source.open_statuses.all())
    return integration


def test_a_sub_objects_own_mapping_beats_another_integrations_wildcard() -> None:
    # given "A" (first by name) with only a wildcard, and "Z" mapping Studio 2 itself
    world = make_world(name="Z integration")
    LockMapping.objects.filter(integration=world.integration).delete()
    LockMapping.objects.create(integration=world.integration, object=world.studio, lock_id="studio-2", lock_name="S2")
    wildcard_only = second_integration(world, name="A integration")
    LockMapping.objects.create(integration=wildcard_only, object=None, lock_id="front", lock_name="Front")
    booking = make_booking(world, status=world.paid, obj=world.studio)
    # when / then: the studio's own lock, not the other integration's default door
    assessment = booking_open_assessment(booking=booking)
    assert assessment.integration == world.integration
    assert assessment.decision.lock is not None
    assert assessment.decision.lock.lock_id == "studio-2"


def test_a_sub_objects_own_mapping_beats_another_integrations_parent_mapping() -> None:
    world = make_world(name="A integration")  # maps Building A (the parent) to the front door
    studio_only = second_integration(world, name="Z integration")
    LockMapping.objects.create(integration=studio_only, object=world.studio, lock_id="studio-2", lock_name="S2")
    # the parent's integration is listed first by name: only specificity can pick the studio's
    booking = make_booking(world, status=world.paid, obj=world.studio)
    assert booking_open_assessment(booking=booking).integration == studio_only
    garage_booking = make_booking(world, status=world.paid, obj=world.building)
    assert booking_open_assessment(booking=garage_booking).integration == world.integration


def test_a_second_active_wildcard_is_refused_at_activation() -> None:
    world = make_world()
    LockMapping.objects.create(integration=world.integration, object=None, lock_id="front", lock_name="Front")
    other = second_integration(world, name="Other", is_active=False)
    LockMapping.objects.create(integration=other, object=None, lock_id="garage", lock_name="Garage")
    steps = activation_missing_steps(integration=other)
    assert any("already has a wildcard" in step for step in steps), steps


def test_automatic_opening_asks_the_integration_that_would_open(django_capture_on_commit_callbacks: Any) -> None:
    # given the studio's integration has automatic opening off, another one (first by name) has it on
    from bookings.services import booking_change_status
    from integrations.models import OpenRequest

    world = make_world(name="Z integration", open_on_status_change=False)
    LockMapping.objects.create(integration=world.integration, object=world.studio, lock_id="studio-2", lock_name="S2")
    eager = second_integration(world, name="A integration", open_on_status_change=True)
    LockMapping.objects.create(integration=eager, object=world.garage, lock_id="garage", lock_name="Garage")
    booking = make_booking(world, status=world.new, obj=world.studio)
    # when the studio booking enters an allowed status
    with django_capture_on_commit_callbacks(execute=True):
        booking_change_status(booking=booking, status=world.paid)
    # then nothing is asked: the integration that serves it said no automatic opens
    assert not OpenRequest.objects.filter(booking=booking).exists()
