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


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    """A real Mosquitto 2.0 on a free port with generated credentials (see
    ``meters/tests/mosquitto.py``); call ``sync_credentials()`` after adding
    meters. Fails, never skips, when the broker cannot start."""
    from meters.tests.mosquitto import MosquittoProcess

    broker = None
    try:
        broker = MosquittoProcess(tmp_path_factory.mktemp("mosquitto"))
        broker.start()
    except RuntimeError as exc:
        if broker is not None:
            broker.kill()
        pytest.fail(f"cannot start the test Mosquitto: {exc}", pytrace=False)
    yield broker
    broker.kill()
