"""A full hour on a real Mosquitto: meters send signed readings over MQTT,
``manage.py ingest_mqtt`` (a subprocess on the test database) records them,
the beat's ``settle_due`` settles the hour, the consumer whose meter ran dry
hears ``disconnect`` on its decision topic, is funded, and hears ``connect``.

The meters subscribe with their own credentials, as firmware would, and check
each decision's signature (the SPEC's sentence, computed here independently)
and that its seq only grows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from meters.funding import meter_fund
from meters.models import MeterDecision, Reading
from meters.mqtt import publishers_close
from meters.protocol import topic_ack
from meters.tests.factories import grid_make, meter_issue, user_make
from meters.tests.mosquitto import MqttProbe
from meters.tests.readings import encoded, reading_body, signed
from settlement.models import SettlementRun
from settlement.tasks import settle_due
from utility import clock
from utility.ledger.models import AccountKind
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.services import system_account, transaction_post, wallet_ensure
from utility.lib.timeutil import interval_floor

from .workers import database_url_of_tests, wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
HOUR = timedelta(hours=1)
K = 1_000_000


def spec_sig(secret: str, payload: dict) -> str:
    """The signature as SPEC.md words it, independent of ``meters.protocol``."""
    body = {key: value for key, value in payload.items() if key != "sig"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), canonical, hashlib.sha256).hexdigest()


class Firmware:
    """A meter on the broker with its own credentials: it publishes readings
    and applies only valid decisions with a higher seq than the last."""

    def __init__(self, broker, grid: str, issued) -> None:
        self.grid, self.meter, self.secret = grid, issued.meter.public_id, issued.secret
        self.probe = MqttProbe(broker, self.meter, self.secret, timeout_s=10)
        assert self.probe.connect() == 0, f"{self.meter} could not log in"
        base = f"grid/{grid}/meters/{self.meter}"
        assert self.probe.subscribe(f"{base}/decision") == [1]
        assert self.probe.subscribe(topic_ack(grid, self.meter)) == [1]
        self.applied_seq = 0
        self.state = "connect"

    def send_reading(self, start, import_wh: int = 0, export_wh: int = 0) -> None:
        body = reading_body(self.meter, 1, start, import_wh=import_wh, export_wh=export_wh)
        topic = f"grid/{self.grid}/meters/{self.meter}/readings"
        assert self.probe.publish(topic, encoded(signed(self.secret, body))) == 0

    def next_on(self, suffix: str, timeout_s: float = 30) -> dict:
        message = self.probe.next_message(timeout_s)
        while message is not None and not message.topic.endswith(suffix):
            message = self.probe.next_message(timeout_s)
        assert message is not None, f"{self.meter}: nothing on .../{suffix} within {timeout_s} s"
        return json.loads(message.payload)

    def obey(self, decision: dict) -> None:
        assert decision["sig"] == spec_sig(self.secret, decision), "a decision the utility did not sign"
        assert decision["seq"] > self.applied_seq, "a stale or replayed decision"
        self.applied_seq, self.state = decision["seq"], decision["state"]

    def close(self) -> None:
        self.probe.close()


@pytest.fixture
def ingest(mosquitto, tmp_path):
    """``manage.py ingest_mqtt`` on the test database and the test broker."""
    log_path = tmp_path / "ingest.log"
    env = {**os.environ, "DATABASE_URL": database_url_of_tests(), "MQTT_URL": mosquitto.url, "LOG_LEVEL": "INFO"}
    command = [sys.executable, "manage.py", "ingest_mqtt", "--client-id", f"e2e-{uuid.uuid4().hex[:8]}"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        wait_until(lambda: "subscribed to" in log_path.read_text(errors="replace") or process.poll() is not None,
                   30, "ingest_mqtt did not start")  # fmt: skip
        assert process.poll() is None, log_path.read_text(errors="replace")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.fixture
def decisions_to(mosquitto, settings):
    settings.MQTT_PUBLISHER, settings.MQTT_URL, settings.MQTT_PUBLISH_TIMEOUT_S = "paho", mosquitto.url, 10
    yield
    publishers_close()


@pytest.fixture
def fixed_clock():
    yield clock.clock_install
    clock.clock_reset()


def test_a_full_hour_on_mosquitto_cuts_the_dry_meter_and_funding_reconnects_it(
    mosquitto, decisions_to, fixed_clock, request
):
    # The hour that just ended two hours ago: in the past for the ingest (real clock).
    hour = interval_floor(clock.now(), 3600) - 2 * HOUR
    grid = grid_make("e2e", now=hour)
    carlos = meter_issue(grid, "e2e-carlos", owner=user_make("carlos"))
    danny = meter_issue(grid, "e2e-danny")
    angel = meter_issue(grid, "e2e-angel", "producer")
    credit = system_account(AccountKind.OPERATOR_CREDIT)
    transaction_post("prepay:carlos", "test", [(credit.pk, -1_500_000), (carlos.meter.account_id, 1_500_000)])
    transaction_post("prepay:danny", "test", [(credit.pk, -100 * K), (danny.meter.account_id, 100 * K)])
    mosquitto.sync_credentials()
    request.getfixturevalue("ingest")
    meters = {name: Firmware(mosquitto, "e2e", issued) for name, issued in
              [("carlos", carlos), ("danny", danny), ("angel", angel)]}  # fmt: skip
    try:
        # The hour's readings, over MQTT, each acked once recorded.
        meters["carlos"].send_reading(hour, import_wh=2_000)
        meters["danny"].send_reading(hour, import_wh=2_000)
        meters["angel"].send_reading(hour, export_wh=3_000)
        for firmware in meters.values():
            assert firmware.next_on("ack")["status"] == "accepted"
        assert Reading.objects.filter(meter__grid=grid, interval_start=hour).count() == 3

        # The beat, ten minutes after the hour ended: the hour is settled, decisions follow.
        fixed_clock(lambda: hour + HOUR + timedelta(minutes=10))
        settle_due.delay()
        assert SettlementRun.objects.get(grid=grid).interval_start == hour
        assert account_balance(carlos.meter.account_id) == -500_000
        cut = meters["carlos"].next_on("decision")
        meters["carlos"].obey(cut)
        assert (cut["state"], cut["reason"], cut["balance_uk"], cut["seq"]) == (
            "disconnect",
            "funds_exhausted",
            -500_000,
            1,
        )
        assert meters["carlos"].state == "disconnect"

        # A neighbour funds Carlos's meter: the debt first, then enough for an hour (2 k).
        neighbour = user_make("neighbour")
        transaction_post("buy", "test", [(credit.pk, -5 * K), (wallet_ensure(neighbour).pk, 5 * K)])
        funded = meter_fund(neighbour, carlos.meter, 3 * K, "e2e-1")
        assert (funded.debt_paid_uk, funded.meter_balance_uk) == (500_000, 2_500_000)
        back = meters["carlos"].next_on("decision")
        meters["carlos"].obey(back)
        assert (back["state"], back["reason"], back["balance_uk"], back["seq"]) == ("connect", "funded", 2_500_000, 2)
        assert meters["carlos"].state == "connect"

        # Nothing was said to the others: Danny has 49 hours left, Angel produces.
        for name in ("danny", "angel"):
            assert meters[name].probe.next_message(1) is None
    finally:
        for firmware in meters.values():
            firmware.close()

    # A meter that rebooted gets the latest decision, retained.
    rebooted = MqttProbe(mosquitto, carlos.meter.public_id, carlos.secret)
    try:
        assert rebooted.connect() == 0
        rebooted.subscribe("grid/e2e/meters/e2e-carlos/decision")
        retained = rebooted.next_message(10)
        assert retained is not None and retained.retain
        assert json.loads(retained.payload) == back
    finally:
        rebooted.close()
    assert list(MeterDecision.objects.order_by("seq").values_list("meter__public_id", "seq", "published")) == [
        ("e2e-carlos", 1, True),
        ("e2e-carlos", 2, True),
    ]
    assert ledger_problems() == []
