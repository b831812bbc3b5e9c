"""Test-wide setup. Under CI=true, a missing service fails the run loudly."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    from django.db import connection

    if IN_CI and connection.vendor != "postgresql":
        pytest.exit("CI=true but the tests are not on PostgreSQL: set DATABASE_URL", returncode=3)
    yield
