"""Market tests publish decisions and prices to the in-memory recorder."""

from __future__ import annotations

import pytest

from meters.mqtt import memory_publisher


@pytest.fixture(autouse=True)
def memory(settings):
    settings.MQTT_PUBLISHER = "memory"
    memory_publisher().clear()
    yield memory_publisher()
    memory_publisher().clear()
