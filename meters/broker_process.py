"""A real Mosquitto 2.0 run by the platform itself: own port, own workdir,
generated credentials. The tests (the ``mosquitto`` fixture) and the demo
(``manage.py demo``) start their broker with it.

``MosquittoProcess`` runs ``mosquitto -c <workdir>/mosquitto.conf`` with the
config, password file and ACL that ``meters.broker`` generates (the same text
``manage.py mosquitto_config`` writes), ``allow_anonymous false`` and
persistence in the workdir. The root ``conftest.py`` exposes one started
instance per test session as the ``mosquitto`` fixture.

A missing ``mosquitto`` binary or a broker that does not come up fails the
test (never a skip): these tests are the proof that the broker enforces the
ACL.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from meters.broker import acl_text, broker_files_write, mosquitto_conf_text, password_file_lines
from meters.credentials import mosquitto_hash

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto")
START_TIMEOUT_S = 10.0


def mosquitto_binary() -> str:
    """Path of the ``mosquitto`` executable (``MOSQUITTO_BIN`` wins); fails loudly if absent."""
    chosen = os.environ.get("MOSQUITTO_BIN")
    if chosen is not None:
        if not os.access(chosen, os.X_OK):
            raise RuntimeError(f"MOSQUITTO_BIN={chosen!r} is not an executable")
        return chosen
    for candidate in (shutil.which("mosquitto") or "", *MOSQUITTO_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "mosquitto (2.0) is not installed: the MQTT tests need a real broker "
        "(apt-get install mosquitto, or set MOSQUITTO_BIN)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connack_code(
    host: str, port: int, username: str, password: str, *, client_id: str = "", timeout_s: float = 5.0
) -> int:
    """Connect once with MQTT v5 and return the CONNACK reason code (0 = success).

    Raises ``TimeoutError`` when no CONNACK arrives (broker down).
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex[:10]}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(username, password)
    result: list[int] = []
    done = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        result.append(reason_code.value)
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        raise TimeoutError(f"cannot reach mosquitto at {host}:{port}: {exc}") from exc
    # Driven by hand in this thread: no background reconnects to wait for.
    deadline = time.monotonic() + timeout_s
    try:
        while not done.is_set():
            if time.monotonic() > deadline or client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                if done.is_set():
                    break
                raise TimeoutError(f"no CONNACK from {host}:{port} within {timeout_s} s")
        return result[0]
    finally:
        client.disconnect()
        client.loop(timeout=0.01)


class MosquittoProcess:
    """One Mosquitto broker on ``127.0.0.1:<port>`` with its files in ``workdir``.

    ``backend_username``/``backend_password`` may read and write every topic;
    meters get in after ``sync_credentials()`` with their public id and secret.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path | None = None, *, port: int | None = None, backend_username: str = "backend"):
        self.binary = mosquitto_binary()
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="cw-mosquitto-"))
        self.port = port or free_port()
        self.backend_username = backend_username
        self.backend_password = secrets.token_urlsafe(18)
        self._backend_hash = mosquitto_hash(self.backend_password)
        self.process: subprocess.Popen | None = None
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self.conf_file = self.workdir / "mosquitto.conf"
        self.log_file = self.workdir / "mosquitto.log"
        self._write_initial_files()

    @property
    def url(self) -> str:
        return f"mqtt://{self.backend_username}:{self.backend_password}@{self.host}:{self.port}"

    def _write_initial_files(self) -> None:
        # Only the backend user until sync_credentials() reads the registry:
        # starting the broker needs no database.
        (self.workdir / "passwd").write_text(
            "\n".join(password_file_lines(self.backend_username, self._backend_hash, [])) + "\n"
        )
        (self.workdir / "passwd").chmod(0o600)
        (self.workdir / "acl").write_text(acl_text(self.backend_username))
        self.conf_file.write_text(
            mosquitto_conf_text(
                password_file=str(self.workdir / "passwd"),
                acl_file=str(self.workdir / "acl"),
                persistence_location=str(self.workdir / "data"),
                port=self.port,
                bind_address=self.host,
                log_file=str(self.log_file),
                # As root, Mosquitto would switch to the 'mosquitto' user, which
                # cannot read a 0600 password file in a root-owned temp dir.
                run_as_root=os.geteuid() == 0,
            )
        )

    # -- lifecycle -----------------------------------------------------------

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> MosquittoProcess:
        """Start the broker (same port, same persistence) and wait until the
        backend can log in; raises ``RuntimeError`` with the log tail if not."""
        if self.is_running():
            return self
        stderr = open(self.workdir / "stderr.log", "ab")  # noqa: SIM115 - owned by the process
        # The binary is found on fixed system paths, the config is ours.
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf_file)], stdout=stderr, stderr=stderr)  # noqa: S603
        stderr.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                code = connack_code(self.host, self.port, self.backend_username, self.backend_password, timeout_s=2)
            except TimeoutError:
                time.sleep(0.05)
                continue
            if code != 0:
                raise RuntimeError(f"backend login refused by the test broker (reason {code}):\n{self.log_tail()}")
            return self
        self.kill()
        raise RuntimeError(f"mosquitto did not come up on port {self.port}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop (SIGTERM): Mosquitto saves its persistence file."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        self.process = None

    def kill(self) -> None:
        """Hard stop (SIGKILL): whatever was not yet saved is lost, like a crash."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> MosquittoProcess:
        self.stop()
        return self.start()

    # -- credentials -----------------------------------------------------------

    def sync_credentials(self, timeout_s: float = 10.0) -> None:
        """Regenerate passwd and acl from the meter registry (needs the
        database) and reload Mosquitto with SIGHUP; returns once the broker has
        reloaded (its log says so and it answers the backend again)."""
        broker_files_write(self.workdir, self.backend_username, self._backend_hash)
        if not self.is_running():
            return
        before = self._reload_count()
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout_s
        while self._reload_count() == before:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not reload within {timeout_s} s:\n{self.log_tail()}")
            time.sleep(0.02)
        # Mosquitto is single-threaded: a login answered after the log line was
        # written is handled after the reload finished.
        code = connack_code(self.host, self.port, self.backend_username, self.backend_password)
        if code != 0:
            raise RuntimeError(f"backend login refused after reload (reason {code}):\n{self.log_tail()}")

    def clear_retained(self) -> int:
        """Delete every retained message (a shared session broker keeps them
        from test to test); returns how many there were."""
        marker = f"cw-test/marker/{uuid.uuid4().hex}"
        with MqttProbe(self, self.backend_username, self.backend_password) as backend:
            if backend.connect() != 0:
                raise RuntimeError("backend login refused")
            backend.subscribe("#")
            assert backend.publish(marker, b"") in (0, 16)
            topics = []
            # Retained messages are queued at SUBSCRIBE, so they all arrive
            # before the marker published after it.
            while (message := backend.next_message()) is not None and message.topic != marker:
                if message.retain:
                    topics.append(message.topic)
            if message is None:
                raise RuntimeError("the marker message never came back")
            for topic in topics:
                assert backend.publish(topic, b"", retain=True) in (0, 16)
        return len(topics)

    def _reload_count(self) -> int:
        try:
            return self.log_file.read_text(errors="replace").count("Reloading config")
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 30) -> str:
        texts = []
        for path in (self.log_file, self.workdir / "stderr.log"):
            with contextlib.suppress(FileNotFoundError):
                texts.append("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(texts) or "(no log)"

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


class MqttProbe:
    """A paho MQTT v5 client for tests: connect, publish and read reason codes,
    subscribe and collect messages. Use as a context manager."""

    def __init__(
        self,
        broker: MosquittoProcess,
        username: str,
        password: str,
        *,
        client_id: str = "",
        clean_start: bool = True,
        timeout_s: float = 5.0,
    ) -> None:
        self.broker = broker
        self.timeout_s = timeout_s
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex[:10]}", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(username, password)
        self.clean_start = clean_start
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._events: dict[str, queue.Queue[Any]] = {"connack": queue.Queue(), "suback": queue.Queue()}
        self._pubacks: dict[int, int] = {}
        self._puback_seen = threading.Condition()
        self.client.on_connect = lambda c, u, f, rc, p: self._events["connack"].put(rc.value)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._events["suback"].put([rc.value for rc in rcs])
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda c, u, message: self.messages.put(message)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._puback_seen:
            self._pubacks[mid] = reason_code.value
            self._puback_seen.notify_all()

    def connect(self) -> int:
        """Connect and return the CONNACK reason code (0 = accepted, 135 = not authorized)."""
        self.client.connect(self.broker.host, self.broker.port, keepalive=30, clean_start=self.clean_start)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self._events["connack"].get(timeout=self.timeout_s)

    def _loop(self) -> None:
        # Like loop_start, minus the automatic reconnect: a refused or dropped
        # connection stays down, and close() never waits for a backoff.
        while not self._stop.is_set():
            if self.client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                return

    def publish(self, topic: str, payload: bytes | dict, *, qos: int = 1, retain: bool = False) -> int:
        """Publish and return the PUBACK reason code (QoS 1): 0 success, 135 not authorized."""
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        info = self.client.publish(topic, data, qos=qos, retain=retain)
        with self._puback_seen:
            if not self._puback_seen.wait_for(lambda: info.mid in self._pubacks, self.timeout_s):
                raise TimeoutError(f"no PUBACK for {topic}")
            return self._pubacks.pop(info.mid)

    def subscribe(self, topic: str, qos: int = 1) -> list[int]:
        """Subscribe and return the SUBACK reason codes (granted QoS, or >= 128 refused)."""
        self.client.subscribe(topic, qos=qos)
        return self._events["suback"].get(timeout=self.timeout_s)

    def next_message(self, timeout_s: float | None = None) -> mqtt.MQTTMessage | None:
        """The next message received, or ``None`` when none came within the timeout."""
        try:
            return self.messages.get(timeout=self.timeout_s if timeout_s is None else timeout_s)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.client.disconnect()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> MqttProbe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
