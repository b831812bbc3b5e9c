"""The MQTT transport on CPython (tests, simulator, a meter run on a PC): paho-mqtt.

CPython only: the device uses ``esp32.UmqttTransport``. No thread is started;
``poll()`` drives paho's loop, so a simulator can run many meters in one
thread and decide when each one talks.
"""

import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

CONNACK_TIMEOUT_S = 10.0


class PahoTransport:
    """``host``/``port`` of the broker; ``username``/``password`` (a meter logs
    in with its id and its secret); ``tls`` for a TLS listener."""

    def __init__(self, host, port=1883, username=None, password=None, tls=False, keepalive_s=30):
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.tls = tls
        self.keepalive_s = keepalive_s
        self._client = None
        self._callback = None
        self._inbox = []
        self._connack = None

    def set_callback(self, callback):
        self._callback = callback

    def connect(self, client_id, will_topic=None, will_payload=None):
        self.close()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311
        )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set()
        if will_topic:
            client.will_set(will_topic, will_payload, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        self._connack = None
        self._inbox = []
        try:
            client.connect(self.host, self.port, keepalive=self.keepalive_s)
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot reach {self.host}:{self.port}: {exc}") from exc
        self._client = client
        deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while self._connack is None and time.monotonic() < deadline:
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
        if self._connack is None or self._connack.is_failure:
            reason = self._connack
            self.close()
            raise OSError(f"broker refused the connection: {reason}")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._connack = reason_code

    def _on_message(self, client, userdata, message):
        self._inbox.append((message.topic, bytes(message.payload)))

    def is_connected(self):
        return self._client is not None and self._client.is_connected()

    def subscribe(self, topic, qos=1):
        result, _mid = self._need().subscribe(topic, qos)
        self._check(result, "subscribe")

    def publish(self, topic, payload, retain=False, qos=1):
        info = self._need().publish(topic, payload, qos=qos, retain=retain)
        self._check(info.rc, "publish")

    def poll(self):
        client = self._need()
        self._check(client.loop(timeout=0.0), "loop")
        while self._inbox:
            topic, payload = self._inbox.pop(0)
            if self._callback is not None:
                self._callback(topic, payload)

    def close(self):
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop(timeout=0.0)
            try:
                client.socket() and client.socket().close()
            except OSError:
                pass

    def crash(self):
        """Drop the TCP connection without DISCONNECT (the broker sends the will)."""
        client, self._client = self._client, None
        if client is not None and client.socket() is not None:
            client.socket().close()

    def _need(self):
        if self._client is None:
            raise OSError("not connected")
        return self._client

    @staticmethod
    def _check(code, what):
        if code != mqtt.MQTT_ERR_SUCCESS:
            raise OSError(f"{what} failed: {mqtt.error_string(code)}")
