"""Settings are read through typed helpers that fail loudly with the variable's name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from ireserve_salto.env import Env

ROOT = Path(__file__).resolve().parents[2]


def test_it_accepts_postgres_and_sqlite_database_urls() -> None:
    env = Env({"DATABASE_URL": "postgres://app:pw@db.example:5432/ireserve"})
    assert env.url("DATABASE_URL", None, schemes=("sqlite", "postgres")) == "postgres://app:pw@db.example:5432/ireserve"
    assert Env({}).url("DATABASE_URL", "sqlite:////tmp/x.db", schemes=("sqlite",)) == "sqlite:////tmp/x.db"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mysql://root@localhost/db", "DATABASE_URL must start with one of sqlite://, postgres://"),
        ("postgres://", "DATABASE_URL has no host name"),
        ("postgres://user:secret@host:notaport/db", "DATABASE_URL has an invalid port"),
        ("just-a-word", "DATABASE_URL must start with one of"),
    ],
)
def test_it_rejects_a_malformed_database_url(value: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        Env({"DATABASE_URL": value}).url("DATABASE_URL", None, schemes=("sqlite", "postgres", "postgresql"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://127.0.0.1:6379/0", "REDIS_URL must start with one of redis://"),
        ("redis://:6379/0", "REDIS_URL has no host name"),
        ("redis://localhost:six/0", "REDIS_URL has an invalid port"),
    ],
)
def test_it_rejects_a_malformed_redis_url(value: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        Env({"REDIS_URL": value}).url("REDIS_URL", None, schemes=("redis", "rediss", "unix"))


def test_it_never_prints_the_password_of_a_bad_url() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        Env({"DATABASE_URL": "mysql://root:hunter2@localhost/db"}).url("DATABASE_URL", None, schemes=("postgres",))
    assert "hunter2" not in str(excinfo.value)
    assert "***" in str(excinfo.value)


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("off", False), ("", False)])
def test_it_reads_booleans(value: str, expected: bool) -> None:
    assert Env({"DEBUG": value}).flag("DEBUG") is expected


def test_it_rejects_a_non_boolean() -> None:
    with pytest.raises(ImproperlyConfigured, match="DEBUG must be a boolean"):
        Env({"DEBUG": "maybe"}).flag("DEBUG")


def test_it_checks_integer_bounds() -> None:
    with pytest.raises(ImproperlyConfigured, match="OPEN_FRESHNESS_SECONDS must be at least 5"):
        Env({"OPEN_FRESHNESS_SECONDS": "1"}).number("OPEN_FRESHNESS_SECONDS", 120, minimum=5)
    with pytest.raises(ImproperlyConfigured, match="must be a whole number"):
        Env({"OPEN_FRESHNESS_SECONDS": "soon"}).number("OPEN_FRESHNESS_SECONDS", 120)


def test_it_reads_secrets_from_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("from-a-file\n")
    assert Env({"SECRET_KEY_FILE": str(secret_file)}).text("SECRET_KEY") == "from-a-file"


def _start_django(**overrides: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    environ.update(overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )


def test_the_project_refuses_to_start_with_a_malformed_database_url() -> None:
    result = _start_django(DATABASE_URL="mysql://localhost/ireserve")
    assert result.returncode != 0
    assert "DATABASE_URL must start with one of sqlite://, postgres://" in result.stderr


def test_the_project_refuses_to_start_with_a_malformed_redis_url() -> None:
    result = _start_django(REDIS_URL="localhost:6379")
    assert result.returncode != 0
    assert "REDIS_URL must start with one of redis://" in result.stderr


def test_the_project_refuses_to_start_without_a_secret_key_in_production() -> None:
    result = _start_django(DEBUG="0", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr
