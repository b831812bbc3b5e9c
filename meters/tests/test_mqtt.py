"""The outbound publisher: URL parsing, the in-memory recorder, and the paho
publisher against a real Mosquitto (PUBACK, refusals, outages, timeouts)."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from meters.mqtt import (
    MemoryPublisher,
    MqttEndpoint,
    MqttPublishError,
    memory_publisher,
    mqtt_publish,
    mqtt_url_parse,
    payload_encode,
    publisher_get,
    publishers_close,
)
from meters.tests.mosquitto import MosquittoProcess, MqttProbe

# -- MQTT_URL ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://backend:s3cret@127.0.0.1:1884", MqttEndpoint("127.0.0.1", 1884, "backend", "s3cret", False)),
        ("mqtt://broker.example", MqttEndpoint("broker.example", 1883, "", "", False)),
        ("mqtts://u:p%40ss%3A@mq.example", MqttEndpoint("mq.example", 8883, "u", "p@ss:", True)),
    ],
)
def test_mqtt_url_parse(url, expected):
    assert mqtt_url_parse(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://host:1883", "mqtt://"),
        ("mqtt://", "no host"),
        ("mqtt://host:notaport", "bad port"),
        ("mqtt://host:99999", "bad port"),
        ("", "mqtt://"),
    ],
)
def test_mqtt_url_parse_refuses_bad_urls(url, message):
    with pytest.raises(ValueError, match=message):
        mqtt_url_parse(url)


# -- payloads and the memory publisher --------------------------------------------


def test_payload_is_compact_sorted_utf8_json():
    assert payload_encode({"b": 1, "a": "Ωk"}) == '{"a":"Ωk","b":1}'.encode()


@pytest.mark.parametrize("payload", [[1, 2], "text", b"{}", None])
def test_payload_must_be_an_object(payload):
    with pytest.raises(TypeError, match="JSON object"):
        payload_encode(payload)


def test_payload_refuses_nan():
    with pytest.raises(ValueError):
        payload_encode({"x": float("nan")})


def test_memory_publisher_records_messages_and_keeps_the_last_retained_per_topic():
    recorder = MemoryPublisher()
    assert recorder.publish("grid/g/price", b'{"p":1}', 1, True).broker is False
    recorder.publish("grid/g/price", b'{"p":2}', 1, True)
    recorder.publish("grid/g/meters/m/ack", b'{"seq":1}', 1, False)
    assert [m.json() for m in recorder.on_topic("grid/g/price")] == [{"p": 1}, {"p": 2}]
    assert recorder.retained["grid/g/price"].json() == {"p": 2}
    assert "grid/g/meters/m/ack" not in recorder.retained
    assert len(recorder.messages) == 3
    recorder.clear()
    assert recorder.messages == [] and recorder.retained == {}


def test_memory_publisher_is_thread_safe():
    recorder = MemoryPublisher()

    def publish_many(worker: int) -> None:
        for i in range(500):
            recorder.publish(f"t/{worker}", str(i).encode(), 1, True)

    threads = [threading.Thread(target=publish_many, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(recorder.messages) == 2000
    assert {topic: m.payload for topic, m in recorder.retained.items()} == {f"t/{w}": b"499" for w in range(4)}


def test_mqtt_publish_with_the_memory_publisher(settings):
    settings.MQTT_PUBLISHER = "memory"
    memory_publisher().clear()
    result = mqtt_publish("grid/g/meters/m/decision", {"seq": 1}, qos=1, retain=True)
    assert result.broker is False  # never claims a broker got it
    (message,) = memory_publisher().messages
    assert (message.topic, message.json(), message.qos, message.retain) == (
        "grid/g/meters/m/decision",
        {"seq": 1},
        1,
        True,
    )
    memory_publisher().clear()


@pytest.mark.parametrize(
    ("topic", "qos", "payload", "error"),
    [
        ("grid/+/price", 1, {}, ValueError),
        ("grid/#", 1, {}, ValueError),
        ("", 1, {}, ValueError),
        ("grid/g/price", 3, {}, ValueError),
        ("grid/g/price", 1, [1], TypeError),
    ],
)
def test_mqtt_publish_refuses_bad_input_and_records_nothing(settings, topic, qos, payload, error):
    settings.MQTT_PUBLISHER = "memory"
    memory_publisher().clear()
    with pytest.raises(error):
        mqtt_publish(topic, payload, qos=qos)
    assert memory_publisher().messages == []


def test_an_unknown_publisher_is_a_configuration_error(settings):
    settings.MQTT_PUBLISHER = "carrier-pigeon"
    with pytest.raises(ImproperlyConfigured, match="MQTT_PUBLISHER"):
        mqtt_publish("grid/g/price", {})
    settings.MQTT_PUBLISHER, settings.MQTT_URL = "paho", ""
    with pytest.raises(ImproperlyConfigured, match="MQTT_URL"):
        mqtt_publish("grid/g/price", {})


# -- the paho publisher against Mosquitto ------------------------------------------


@pytest.fixture
def paho_to(settings):
    """Point the publisher at a broker URL (short timeout); close clients after."""

    def point(url: str, timeout_s: int = 2) -> None:
        settings.MQTT_PUBLISHER, settings.MQTT_URL, settings.MQTT_PUBLISH_TIMEOUT_S = "paho", url, timeout_s

    yield point
    publishers_close()


@pytest.fixture
def spare_broker():
    """A broker of its own, for tests that stop, kill or freeze it."""
    broker = MosquittoProcess().start()
    yield broker
    if broker.process is not None and broker.process.poll() is None:
        broker.process.send_signal(signal.SIGCONT)
    broker.cleanup()


@pytest.mark.services
def test_paho_publish_returns_after_the_broker_acknowledged(mosquitto, paho_to):
    mosquitto.clear_retained()
    paho_to(mosquitto.url)
    with MqttProbe(mosquitto, mosquitto.backend_username, mosquitto.backend_password) as listener:
        assert listener.connect() == 0
        listener.subscribe("grid/pub-test/#")
        result = mqtt_publish("grid/pub-test/price", {"tariff_uk_per_kwh": 1_000_000}, retain=True)
        assert result.broker is True
        message = listener.next_message()
        assert message is not None
        assert json.loads(message.payload) == {"tariff_uk_per_kwh": 1_000_000}
    # Retained: a client that subscribes afterwards still gets it.
    with MqttProbe(mosquitto, mosquitto.backend_username, mosquitto.backend_password) as late:
        assert late.connect() == 0
        late.subscribe("grid/pub-test/price")
        message = late.next_message()
        assert message is not None and message.retain and json.loads(message.payload)["tariff_uk_per_kwh"] == 1_000_000


@pytest.mark.services
def test_paho_publish_raises_when_the_broker_refuses_the_topic(mosquitto, paho_to, transactional_db):
    """With a meter's credentials the publisher may not write another meter's
    decision: the PUBACK carries 135 and the call raises, it does not pretend."""
    from meters.tests.factories import grid_make, meter_issue

    issued = meter_issue(grid_make("pub"), "P1")
    mosquitto.sync_credentials()
    paho_to(f"mqtt://P1:{issued.secret}@{mosquitto.host}:{mosquitto.port}")
    assert mqtt_publish("grid/pub/meters/P1/readings", {"seq": 1}).broker is True
    with pytest.raises(MqttPublishError, match="reason code 135"):
        mqtt_publish("grid/pub/meters/P1/decision", {"seq": 1}, retain=True)


@pytest.mark.services
def test_paho_publish_raises_when_the_login_is_refused(mosquitto, paho_to):
    paho_to(f"mqtt://{mosquitto.backend_username}:wrong@{mosquitto.host}:{mosquitto.port}")
    with pytest.raises(MqttPublishError, match="refused the backend login: reason code 135"):
        mqtt_publish("grid/x/price", {})


@pytest.mark.services
def test_paho_publish_raises_when_the_broker_is_down_then_recovers(spare_broker, paho_to):
    paho_to(spare_broker.url)
    assert mqtt_publish("grid/x/price", {"n": 1}).broker is True
    client = publisher_get()._client
    spare_broker.stop()
    # Depending on whether paho noticed the closed socket yet.
    with pytest.raises(MqttPublishError, match=r"not connected|no PUBACK|failed"):
        mqtt_publish("grid/x/price", {"n": 2})
    spare_broker.start()  # same port: paho reconnects on its own (backoff up to 30 s)
    deadline = time.monotonic() + 20
    while True:
        try:
            assert mqtt_publish("grid/x/price", {"n": 3}).broker is True
            break
        except MqttPublishError:
            if time.monotonic() > deadline:
                raise
    assert publisher_get()._client is client  # the same client, reconnected


@pytest.mark.services
def test_paho_publish_raises_when_the_broker_never_acknowledges(spare_broker, paho_to):
    paho_to(spare_broker.url, timeout_s=1)
    assert mqtt_publish("grid/x/price", {"n": 1}).broker is True
    spare_broker.process.send_signal(signal.SIGSTOP)  # alive, connected, silent
    try:
        with pytest.raises(MqttPublishError, match="no PUBACK"):
            mqtt_publish("grid/x/price", {"n": 2})
    finally:
        spare_broker.process.send_signal(signal.SIGCONT)


@pytest.mark.services
def test_paho_publish_raises_when_no_broker_listens(paho_to):
    from meters.tests.mosquitto import free_port

    paho_to(f"mqtt://backend:x@127.0.0.1:{free_port()}")
    with pytest.raises(MqttPublishError, match="cannot reach"):
        mqtt_publish("grid/x/price", {})


def test_memory_publish_many_records_each_message():
    recorder = MemoryPublisher()
    assert recorder.publish_many([("a/1", b"1"), ("a/2", b"2"), ("a/1", b"3")], qos=1, retain=True) == [True] * 3
    assert [(m.topic, m.payload) for m in recorder.messages] == [("a/1", b"1"), ("a/2", b"2"), ("a/1", b"3")]
    assert recorder.retained["a/1"].payload == b"3"


@pytest.mark.services
def test_paho_publish_many_pipelines_and_reports_each_message(mosquitto, paho_to, transactional_db):
    from meters.tests.factories import grid_make, meter_issue

    mosquitto.clear_retained()
    issued = meter_issue(grid_make("many"), "P2")
    mosquitto.sync_credentials()
    paho_to(mosquitto.url)
    messages = [(f"grid/many/meters/m{i}/decision", json.dumps({"seq": i}).encode()) for i in range(3000)]
    started = time.monotonic()
    assert publisher_get().publish_many(messages, qos=1, retain=True) == [True] * 3000
    elapsed = time.monotonic() - started
    with MqttProbe(mosquitto, mosquitto.backend_username, mosquitto.backend_password) as late:
        assert late.connect() == 0
        late.subscribe("grid/many/meters/m2999/decision")
        message = late.next_message()
        assert message is not None and message.retain and json.loads(message.payload) == {"seq": 2999}
    assert elapsed < 10, f"3000 pipelined QoS 1 publishes took {elapsed:.1f} s"

    # A meter's credentials: the broker takes its own topic and refuses the rest.
    paho_to(f"mqtt://P2:{issued.secret}@{mosquitto.host}:{mosquitto.port}")
    mixed = [
        ("grid/many/meters/P2/readings", b"{}"),
        ("grid/many/meters/X/readings", b"{}"),
        ("grid/many/price", b"{}"),
    ]
    assert publisher_get().publish_many(mixed, qos=1) == [True, False, False]


@pytest.mark.services
def test_paho_publish_many_reports_nothing_confirmed_while_the_broker_is_down(spare_broker, paho_to):
    paho_to(spare_broker.url, timeout_s=1)
    assert publisher_get().publish_many([("grid/x/price", b"{}")]) == [True]
    spare_broker.stop()
    assert publisher_get().publish_many([("grid/x/price", b"{}"), ("grid/y/price", b"{}")]) == [False, False]


def test_a_missing_mosquitto_fails_loudly(monkeypatch):
    """The broker tests fail (never skip) without a mosquitto binary."""
    monkeypatch.setenv("MOSQUITTO_BIN", "/nonexistent/mosquitto")
    with pytest.raises(RuntimeError, match="not an executable"):
        MosquittoProcess()
