"""Signed supply decisions and the price channel: the service with the
in-memory publisher, then retained delivery through a real Mosquitto."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta

import pytest
from django.db import transaction

from meters.decisions import decision_publish, decisions_send_pending, price_publish
from meters.decisions_bulk import _Outgoing, decisions_send_bulk
from meters.models import Grid, Meter, MeterDecision
from meters.mqtt import memory_publisher, payload_encode, publishers_close
from meters.protocol import signature_valid
from meters.services import grid_update_rules
from meters.tests.factories import T0, grid_make, meter_issue
from meters.tests.mosquitto import MosquittoProcess, MqttProbe, free_port
from utility.ledger.models import AccountKind
from utility.ledger.services import system_account, transaction_post
from utility.ledger.tests.helpers import run_concurrently

NOW = T0 + timedelta(hours=10, minutes=7, seconds=30)


@pytest.fixture
def memory(settings):
    settings.MQTT_PUBLISHER = "memory"
    memory_publisher().clear()
    yield memory_publisher()
    memory_publisher().clear()


@pytest.fixture
def paho_to(settings):
    def point(url: str) -> None:
        settings.MQTT_PUBLISHER, settings.MQTT_URL, settings.MQTT_PUBLISH_TIMEOUT_S = "paho", url, 3

    yield point
    publishers_close()


def fund(meter: Meter, amount_uk: int, key: str = "test:fund") -> None:
    credit = system_account(AccountKind.OPERATOR_CREDIT)
    transaction_post(key, "test_fund", [(meter.account_id, amount_uk), (credit.pk, -amount_uk)])


def spec_sig(secret: str, payload: dict) -> str:
    """The signature exactly as SPEC.md words it, independent of meters.protocol."""
    body = {k: v for k, v in payload.items() if k != "sig"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), canonical, hashlib.sha256).hexdigest()


# -- the service -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_decision_is_signed_stored_and_published_retained(memory, django_capture_on_commit_callbacks):
    issued = meter_issue(grid_make("demo"), "M-1")
    fund(issued.meter, 2_500_000)
    with django_capture_on_commit_callbacks(execute=True):
        decision = decision_publish(issued.meter, "disconnect", "funds_exhausted", now=NOW)

    expected = {
        "state": "disconnect",
        "reason": "funds_exhausted",
        "balance_uk": 2_500_000,
        "issued_at": "2026-01-01T10:07:30Z",
        "seq": 1,
    }
    assert decision.payload == {**expected, "sig": spec_sig(issued.secret, expected)}
    assert (decision.seq, decision.state, decision.balance_uk, decision.issued_by) == (
        1,
        "disconnect",
        2_500_000,
        "system",
    )
    decision.refresh_from_db()
    assert decision.published is True
    meter = Meter.objects.get(pk=issued.meter.pk)
    assert (meter.decision_seq, meter.supply_state) == (1, "disconnect")
    assert (issued.meter.decision_seq, issued.meter.supply_state) == (1, "disconnect")  # caller's copy too
    (message,) = memory.messages
    assert (message.topic, message.qos, message.retain) == ("grid/demo/meters/M-1/decision", 1, True)
    assert message.json() == decision.payload


@pytest.mark.django_db
def test_seq_grows_per_meter_and_the_retained_decision_is_the_latest(memory, django_capture_on_commit_callbacks):
    grid = grid_make("demo")
    a, b = meter_issue(grid, "A").meter, meter_issue(grid, "B").meter
    with django_capture_on_commit_callbacks(execute=True):
        decision_publish(a, "disconnect", "funds_exhausted", now=NOW)
        decision_publish(b, "connect", "funded", now=NOW)
        decision_publish(a, "connect", "funded", now=NOW + timedelta(minutes=1), issued_by="operator-ann")
        decision_publish(a, "connect", "low_balance", now=NOW + timedelta(minutes=2))
    assert list(MeterDecision.objects.filter(meter=a).order_by("seq").values_list("seq", "reason", "issued_by")) == [
        (1, "funds_exhausted", "system"),
        (2, "funded", "operator-ann"),
        (3, "low_balance", "system"),
    ]
    assert MeterDecision.objects.get(meter=b).seq == 1
    # All three commit together (one outer transaction): only the latest goes
    # out; the superseded ones are kept, unpublished.
    assert [m.json()["seq"] for m in memory.on_topic("grid/demo/meters/A/decision")] == [3]
    assert memory.retained["grid/demo/meters/A/decision"].json() == MeterDecision.objects.get(meter=a, seq=3).payload
    assert list(MeterDecision.objects.filter(meter=a).order_by("seq").values_list("published", flat=True)) == [
        False,
        False,
        True,
    ]


BAD_DECISIONS = [
    ("off", "funded", "system", "state must be one of"),
    ("", "funded", "system", "state must be one of"),
    (None, "funded", "system", "state must be one of"),
    ("CONNECT", "funded", "system", "state must be one of"),
    ("connect", "", "system", "reason must be"),
    ("connect", "Low Balance", "system", "reason must be"),
    ("connect", "x" * 61, "system", "reason must be"),
    ("connect", 7, "system", "reason must be"),
    ("connect", "funded\n", "system", "reason must be"),
    ("connect", "funded", "", "issued_by"),
    ("connect", "funded", "x" * 151, "issued_by"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("state", "reason", "issued_by", "message"), BAD_DECISIONS)
def test_bad_input_raises_and_changes_nothing(
    memory, django_capture_on_commit_callbacks, state, reason, issued_by, message
):
    meter = meter_issue(grid_make("demo"), "M-1").meter
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValueError, match=message):
        decision_publish(meter, state, reason, issued_by=issued_by, now=NOW)
    assert_untouched(meter, memory)


def assert_untouched(meter: Meter, memory) -> None:
    fresh = Meter.objects.get(pk=meter.pk)
    assert (fresh.decision_seq, fresh.supply_state) == (0, "connect")
    assert (meter.decision_seq, meter.supply_state) == (0, "connect")
    assert not MeterDecision.objects.exists()
    assert memory.messages == []


@pytest.mark.django_db
def test_other_bad_input_raises_and_changes_nothing(memory, django_capture_on_commit_callbacks):
    meter = meter_issue(grid_make("demo"), "M-1").meter
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(ValueError, match="naive datetime"):
            decision_publish(meter, "connect", "funded", now=datetime(2026, 1, 1, 10))
        with pytest.raises(ValueError, match="not a saved meter"):
            decision_publish(Meter(public_id="ghost"), "connect", "funded", now=NOW)
        with pytest.raises(ValueError, match="not a saved meter"):
            decision_publish("M-1", "connect", "funded", now=NOW)
    assert_untouched(meter, memory)


@pytest.mark.django_db
def test_a_never_disconnect_meter_is_never_told_to_disconnect(memory, django_capture_on_commit_callbacks):
    meter = meter_issue(grid_make("demo"), "clinic").meter
    Meter.objects.filter(pk=meter.pk).update(never_disconnect=True)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValueError, match="never_disconnect"):
        decision_publish(meter, "disconnect", "funds_exhausted", now=NOW)
    assert_untouched(meter, memory)
    with django_capture_on_commit_callbacks(execute=True):
        assert decision_publish(meter, "connect", "exempt", now=NOW).seq == 1


@pytest.mark.django_db(transaction=True)
def test_nothing_is_published_when_the_callers_transaction_rolls_back(memory):
    meter = meter_issue(grid_make("demo"), "M-1").meter
    with pytest.raises(RuntimeError, match="settlement failed"), transaction.atomic():
        decision_publish(meter, "disconnect", "funds_exhausted", now=NOW)
        raise RuntimeError("settlement failed")
    assert not MeterDecision.objects.exists()
    assert Meter.objects.get(pk=meter.pk).decision_seq == 0
    assert memory.messages == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_decisions_get_distinct_seqs_and_reach_the_broker_in_order(memory):
    meter = meter_issue(grid_make("demo"), "M-1").meter
    states = ["connect", "disconnect"] * 4
    results = run_concurrently(
        [
            lambda state=state: decision_publish(Meter.objects.get(pk=meter.pk), state, "test", now=NOW)
            for state in states
        ]
    )
    assert sorted(r.seq for r in results) == list(range(1, 9)), results
    assert Meter.objects.get(pk=meter.pk).decision_seq == 8
    published = [m.json()["seq"] for m in memory.on_topic("grid/demo/meters/M-1/decision")]
    # Superseded decisions may be skipped, but the broker never goes back in seq.
    assert published == sorted(published) and published[-1] == 8
    assert memory.retained["grid/demo/meters/M-1/decision"].json() == MeterDecision.objects.get(seq=8).payload


@pytest.mark.django_db(transaction=True)
def test_a_decision_the_broker_did_not_take_is_sent_later_and_only_the_latest(memory, paho_to, settings):
    grid = grid_make("demo")
    a, b = meter_issue(grid, "A").meter, meter_issue(grid, "B").meter
    paho_to(f"mqtt://backend:x@127.0.0.1:{free_port()}")  # nobody listens there
    decision_publish(a, "disconnect", "funds_exhausted", now=NOW)
    decision_publish(a, "connect", "funded", now=NOW)
    decision_publish(b, "connect", "funded", now=NOW)
    assert not MeterDecision.objects.filter(published=True).exists()  # stored, not pretended sent

    settings.MQTT_PUBLISHER = "memory"  # the broker is back
    assert decisions_send_pending() == 2
    assert {m.topic: m.json()["seq"] for m in memory.messages} == {
        "grid/demo/meters/A/decision": 2,
        "grid/demo/meters/B/decision": 1,
    }
    assert list(MeterDecision.objects.order_by("meter__public_id", "seq").values_list("published", flat=True)) == [
        False,  # A #1: superseded by A #2, never sent
        True,
        True,
    ]
    assert decisions_send_pending() == 0


@pytest.mark.django_db(transaction=True)
def test_the_bulk_claim_sends_only_each_meters_latest_unpublished_decision(memory, paho_to, settings):
    grid = grid_make("demo")
    a, b, c = (meter_issue(grid, name).meter for name in "ABC")
    paho_to(f"mqtt://backend:x@127.0.0.1:{free_port()}")  # nobody listens there: all stay unpublished
    for meter, state in ((a, "disconnect"), (a, "connect"), (b, "connect"), (c, "disconnect")):
        decision_publish(meter, state, "test", now=NOW)
    settings.MQTT_PUBLISHER = "memory"
    MeterDecision.objects.filter(meter=c).update(published=True)  # C's went out meanwhile
    outgoing = [
        _Outgoing(d.meter_id, d.seq, f"grid/demo/meters/{d.meter.public_id}/decision", payload_encode(d.payload))
        for d in MeterDecision.objects.select_related("meter").order_by("meter__public_id", "seq")
    ]
    assert len(outgoing) == 4
    assert decisions_send_bulk(outgoing) == 2  # A #2 and B #1; A #1 is superseded, C's already out
    assert sorted((m.topic.split("/")[3], m.json()["seq"]) for m in memory.messages) == [("A", 2), ("B", 1)]
    published = MeterDecision.objects.order_by("meter__public_id", "seq").values_list("published", flat=True)
    assert list(published) == [False, True, True, True]
    assert decisions_send_bulk(outgoing) == 0  # claimed once only


@pytest.mark.django_db
def test_price_payload_and_retained_topic(memory):
    grid = grid_make("demo", interval_s=900, tariff_uk_per_kwh=1_250_000)
    payload = price_publish(grid, NOW)
    assert payload == {
        "grid": "demo",
        "tariff_uk_per_kwh": 1_250_000,
        "interval_s": 900,
        "interval_start": "2026-01-01T10:00:00Z",
        "issued_at": "2026-01-01T10:07:30Z",
    }
    grid_update_rules(grid, tariff_uk_per_kwh=900_000)
    price_publish(grid, NOW + timedelta(minutes=10))
    retained = memory.retained["grid/demo/price"]
    assert (retained.qos, retained.retain) == (1, True)
    assert retained.json()["tariff_uk_per_kwh"] == 900_000
    assert retained.json()["interval_start"] == "2026-01-01T10:15:00Z"


@pytest.mark.django_db
def test_price_bad_input_raises_and_publishes_nothing(memory):
    grid = grid_make("demo")
    with pytest.raises(ValueError, match="naive datetime"):
        price_publish(grid, datetime(2026, 1, 1, 10))
    with pytest.raises(ValueError, match="not a saved grid"):
        price_publish(Grid(slug="ghost"), NOW)
    assert memory.messages == []


# -- through a real Mosquitto -------------------------------------------------------------


def received_all(client: MqttProbe, timeout_s: float = 1.0) -> list:
    messages = []
    while (message := client.next_message(timeout_s=timeout_s)) is not None:
        messages.append(message)
    return messages


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_meter_that_connects_later_gets_its_latest_signed_decision(mosquitto, paho_to):
    mosquitto.clear_retained()
    issued = meter_issue(grid_make("demo"), "M-7")
    fund(issued.meter, 1_000_000)
    mosquitto.sync_credentials()
    paho_to(mosquitto.url)
    decision_publish(issued.meter, "connect", "funded", now=NOW)
    decision_publish(issued.meter, "disconnect", "funds_exhausted", now=NOW + timedelta(hours=1))
    decision_publish(issued.meter, "connect", "funded", now=NOW + timedelta(hours=2))
    assert MeterDecision.objects.filter(published=True).count() == 3

    with MqttProbe(mosquitto, "M-7", issued.secret) as meter:
        assert meter.connect() == 0
        assert meter.subscribe("grid/demo/meters/M-7/decision") == [1]
        (retained,) = received_all(meter)
        body = json.loads(retained.payload)
        assert retained.retain is True
        assert (body["seq"], body["state"], body["balance_uk"]) == (3, "connect", 1_000_000)
        assert body["issued_at"] == "2026-01-01T12:07:30Z"
        assert signature_valid(issued.secret, body) and body["sig"] == spec_sig(issued.secret, body)

        decision_publish(issued.meter, "disconnect", "funds_exhausted", now=NOW + timedelta(hours=3))
        (live,) = received_all(meter)
        live_body = json.loads(live.payload)
        assert live_body["seq"] == 4 > body["seq"]
        assert live_body["state"] == "disconnect" and signature_valid(issued.secret, live_body)
        # Signed for this meter only: another meter's secret does not verify it.
        assert not signature_valid(meter_issue(Grid.objects.get(), "M-8").secret, live_body)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_price_is_retained_for_late_subscribers(mosquitto, paho_to):
    mosquitto.clear_retained()
    grid = grid_make("demo")
    issued = meter_issue(grid, "M-1")
    mosquitto.sync_credentials()
    paho_to(mosquitto.url)
    price_publish(grid, NOW)
    grid_update_rules(grid, tariff_uk_per_kwh=1_100_000)
    sent = price_publish(grid, NOW + timedelta(hours=1))
    with MqttProbe(mosquitto, "M-1", issued.secret) as meter:
        assert meter.connect() == 0
        assert meter.subscribe("grid/demo/price") == [1]
        (message,) = received_all(meter)
        assert message.retain is True
        assert json.loads(message.payload) == sent
        assert sent["tariff_uk_per_kwh"] == 1_100_000


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_decisions_made_during_a_broker_outage_are_delivered_after_it(paho_to):
    broker = MosquittoProcess().start()
    try:
        issued = meter_issue(grid_make("demo"), "M-1")
        broker.sync_credentials()
        paho_to(broker.url)
        broker.stop()
        decision_publish(issued.meter, "disconnect", "funds_exhausted", now=NOW)
        assert MeterDecision.objects.get().published is False
        broker.start()
        assert decisions_send_pending() == 1
        with MqttProbe(broker, "M-1", issued.secret) as meter:
            assert meter.connect() == 0
            meter.subscribe("grid/demo/meters/M-1/decision")
            (message,) = received_all(meter)
            assert json.loads(message.payload)["seq"] == 1 and message.retain
    finally:
        publishers_close()
        broker.cleanup()
