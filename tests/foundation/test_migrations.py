"""The models and the migrations agree: a change to a model (a field's length, a constraint) comes with its
migration, or the schema the product runs on is not the one its code describes."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_every_model_change_has_its_migration() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
