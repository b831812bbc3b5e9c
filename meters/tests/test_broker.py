"""Broker files as text: the password file, the ACL and the recommended config."""

from __future__ import annotations

import pytest

from meters.broker import acl_text, broker_meter_credentials, mosquitto_conf_text, password_file_lines
from meters.credentials import mosquitto_hash, mosquitto_hash_matches
from meters.models import Meter
from meters.tests.factories import grid_make, meter_issue

HASH_A = mosquitto_hash("secret-a", salt=b"0123456789ab")
HASH_B = mosquitto_hash("secret-b", salt=b"ba9876543210")
HASH_BACKEND = mosquitto_hash("backend-pw", salt=b"backendsalt!")


def test_password_file_has_the_backend_then_each_meter():
    lines = password_file_lines("backend", HASH_BACKEND, [("m-1", HASH_A), ("m_2", HASH_B)])
    assert lines == [f"backend:{HASH_BACKEND}", f"m-1:{HASH_A}", f"m_2:{HASH_B}"]
    assert all(line.count(":") == 1 for line in lines)
    assert HASH_A.startswith("$7$101$")


def test_password_file_with_no_meters_has_only_the_backend():
    assert password_file_lines("backend", HASH_BACKEND, []) == [f"backend:{HASH_BACKEND}"]


@pytest.mark.parametrize(
    ("backend", "meters", "message"),
    [
        ("back:end", [], "not allowed"),
        ("", [], "not allowed"),
        ("backend", [("m/1", HASH_A)], "not allowed"),
        ("backend", [("m+1", HASH_A)], "not allowed"),
        ("backend", [("m#", HASH_A)], "not allowed"),
        ("backend", [("m 1", HASH_A)], "not allowed"),
        ("backend", [("m1\nbackend", HASH_A)], "not allowed"),
        ("backend", [("m1\n", HASH_A)], "not allowed"),
        ("backend", [("m1", "plain-password")], "not a Mosquitto"),
        ("backend", [("m1", HASH_A + "\n")], "not a Mosquitto"),
        ("backend", [("m1", HASH_A + "\nx:y")], "not a Mosquitto"),
        ("backend", [("m1", HASH_A), ("m1", HASH_B)], "appears twice"),
        ("backend", [("backend", HASH_A)], "appears twice"),
    ],
)
def test_password_file_refuses_what_would_corrupt_it_or_clash(backend, meters, message):
    with pytest.raises(ValueError, match=message):
        password_file_lines(backend, HASH_BACKEND, meters)


def test_acl_gives_the_backend_everything_and_each_meter_its_own_topics():
    text = acl_text("backend")
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "user backend",
        "topic readwrite #",
        "pattern write grid/+/meters/%u/readings",
        "pattern write grid/+/meters/%u/status",
        "pattern write grid/+/meters/%u/state",
        "pattern read grid/+/meters/%u/ack",
        "pattern read grid/+/meters/%u/decision",
        "pattern read grid/+/price",
    ]
    # %c is the client id, which a client chooses: never trusted.
    assert "%c" not in "\n".join(rules)


def test_acl_refuses_a_bad_backend_name():
    with pytest.raises(ValueError, match="not allowed"):
        acl_text("back end")


def test_recommended_config_keeps_readings_through_outages():
    conf = mosquitto_conf_text(
        password_file="/etc/cw/passwd", acl_file="/etc/cw/acl", persistence_location="/var/lib/cw", port=1884
    )
    lines = conf.splitlines()
    for setting in (
        "per_listener_settings true",
        "persistence true",
        "persistence_location /var/lib/cw/",
        "max_queued_messages 1000000",
        "listener 1884",
        "allow_anonymous false",
        "password_file /etc/cw/passwd",
        "acl_file /etc/cw/acl",
        "log_dest stderr",
    ):
        assert setting in lines
    # Per-listener security settings must come after their listener.
    assert lines.index("listener 1884") < lines.index("allow_anonymous false")
    assert "user root" not in lines


def test_recommended_config_refuses_a_bad_port():
    with pytest.raises(ValueError, match="port"):
        mosquitto_conf_text(password_file="p", acl_file="a", persistence_location="d", port=70000)


@pytest.mark.django_db
def test_broker_users_are_the_active_meters_with_their_hashes():
    grid = grid_make("demo")
    issued = {name: meter_issue(grid, name) for name in ("zeta", "alpha", "gone")}
    Meter.objects.filter(public_id="gone").update(active=False)
    users = broker_meter_credentials()
    assert [name for name, _ in users] == ["alpha", "zeta"]
    for name, hashed in users:
        assert mosquitto_hash_matches(issued[name].secret, hashed)
