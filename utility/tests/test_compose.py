"""docker-compose.yml stays in step with the code: no test starts it (there is
no Docker engine here), so this reads it and checks what the code can check."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands

COMPOSE = Path(settings.BASE_DIR) / "docker-compose.yml"
APP_SERVICES = {"migrate", "web", "worker", "beat", "ingest", "demo-seed", "simulator"}
REQUIRED = {"postgres", "redis", "mosquitto", "migrate", "web", "worker", "beat", "ingest", "anvil"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _commands(service: dict) -> list[list[str]]:
    """Each command line a service runs (a shell ``&&`` chain split into its parts)."""
    command = service.get("command")
    if command is None:
        return []
    if isinstance(command, list):
        command = shlex.join(command)
    if command.startswith("sh -c "):
        command = shlex.split(command)[2]
    return [shlex.split(part) for part in command.split("&&")]


def test_every_service_is_there_and_every_app_service_is_the_app(compose):
    services = compose["services"]
    assert set(services) >= REQUIRED
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert services[name]["image"] == "commonwatt:latest", name
        assert environment["DEBUG"] == "false", name
        for variable in ("SECRET_KEY", "METER_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "MQTT_URL"):
            assert variable in environment, (name, variable)


def test_every_command_the_stack_runs_exists(compose):
    known = set(get_commands())
    for name, service in compose["services"].items():
        for argv in _commands(service):
            if argv[:2] == ["python", "manage.py"]:
                assert argv[2] in known, f"{name}: no management command {argv[2]!r}"
            elif argv[0] == "celery":
                assert argv[1:3] == ["-A", "utility"] and argv[3] in {"worker", "beat"}, (name, argv)


def test_named_volumes_are_declared_and_dependencies_exist(compose):
    services, volumes = compose["services"], set(compose["volumes"])
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name}: volume {source!r} is not declared"
            else:
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} is not in the repository"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on a missing service {dependency!r}"


def test_postgres_drops_the_sessions_of_killed_clients(compose):
    argv = _commands(compose["services"]["postgres"])[0]
    assert "client_connection_check_interval=10s" in argv
