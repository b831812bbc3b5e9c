"""``python -m firmware.sim``: the meters file, the options, and a run against
a real Mosquitto (our own anonymous one) with a paho stand-in backend."""

import hashlib
import hmac
import itertools
import json
import os
import queue
import subprocess
import sys
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware.sim.cli import broker_parse, main, meters_file_load
from firmware.sim.plan import MeterSpec

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3600


def write_meters(path, grid, meters, interval_s=3600):
    path.write_text(json.dumps({"grid": grid, "interval_s": interval_s, "meters": meters}))
    return path


def test_a_meters_file_gives_the_grid_and_the_specs(tmp_path):
    path = write_meters(
        tmp_path / "m.json",
        "demo",
        [
            {"meter": "M-A", "secret": "a", "profile": "solar", "scale": 5000},
            {"meter": "SL-1", "secret": "l", "kind": "consumer", "public": True},
            {"meter": "M-B", "secret": "b", "kind": "prosumer", "seq": 9, "import_total_wh": 5},
            {"meter": "M-C", "secret": "c"},
        ],
        interval_s=900,
    )
    grid, interval_s, specs = meters_file_load(path)
    assert (grid, interval_s) == ("demo", 900)
    assert specs == [
        MeterSpec("M-A", "a", "solar", 5000),
        MeterSpec("SL-1", "l", "light"),
        MeterSpec("M-B", "b", "battery", seq=9, import_total_wh=5),
        MeterSpec("M-C", "c", "household"),
    ]


@pytest.mark.parametrize(
    ("document", "why"),
    [
        ("not json", "cannot read"),
        ({"grid": "g"}, '"meters"'),
        ({"grid": "", "meters": []}, "grid slug"),
        ({"grid": "g", "interval_s": 7000, "meters": []}, "divides a day"),
        ({"grid": "g", "meters": []}, "no meters"),
        ({"grid": "g", "meters": [{"meter": "M-1"}]}, "secret"),
        ({"grid": "g", "meters": [{"meter": "M-1", "secret": "s", "kind": "windmill"}]}, "kind"),
        ({"grid": "g", "meters": [{"meter": "M-1", "secret": "s", "seq": -3}]}, "seq"),
    ],
)
def test_a_bad_meters_file_says_why(tmp_path, document, why):
    path = tmp_path / "m.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(ValueError, match=why):
        meters_file_load(path)


def test_broker_urls():
    assert broker_parse("mqtt://backend:pw@10.0.0.5:1884") == ("10.0.0.5", 1884, False)
    assert broker_parse("mqtts://broker.example") == ("broker.example", 8883, True)
    with pytest.raises(ValueError):
        broker_parse("http://x")


def test_bad_options_are_refused_before_anything_runs(tmp_path, capsys):
    path = write_meters(tmp_path / "m.json", "g", [{"meter": "M-1", "secret": "s"}])
    for argv, why in [
        (["--meters-file", str(path), "--broker", "tcp://x"], "mqtt://host:port"),
        (["--meters-file", str(path), "--broker", "mqtt://x", "--faults", "offline:M-1"], "needs a length"),
        (["--meters-file", str(path), "--broker", "mqtt://x", "--speed", "-2"], "speed"),
        (["--meters-file", str(path), "--broker", "mqtt://x", "--faults", "jump:M-2@1h"], "not in the fleet"),
        (["--meters-file", str(path), "--broker", "mqtt://x", "--cloud", "120"], "percentage"),
        (["--meters-file", str(path), "--broker", "mqtt://x", "--tick-ms", "0"], "≥ 1"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert why in capsys.readouterr().err


class Acker:
    """The platform's side as plain paho: verifies and acks every reading."""

    def __init__(self, broker, grid, secrets):
        self.secrets, self.valid, self.invalid = secrets, {}, []
        self.arrived = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"acker-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"grid/{grid}/meters/+/readings", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message):
        body = json.loads(message.payload)
        canonical = json.dumps(
            {k: v for k, v in body.items() if k != "sig"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        secret = self.secrets[body["meter"]].encode()
        if hmac.compare_digest(hmac.new(secret, canonical, hashlib.sha256).hexdigest(), body["sig"]):
            self.valid.setdefault((body["meter"], body["period_start"]), body)
        else:
            self.invalid.append(body)
        ack = {"seq": body["seq"], "status": "accepted", "reason": None}
        client.publish(message.topic.rsplit("/", 1)[0] + "/ack", json.dumps(ack), qos=1)

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def run_sim(*args, timeout_s=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "firmware.sim", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)


@pytest.mark.services
def test_the_command_runs_a_fleet_against_mosquitto_and_resumes_from_its_state(anonymous_mosquitto, tmp_path):
    grid = f"sim{uuid.uuid4().hex[:6]}"
    secrets = {"M-H1": "h1-secret", "M-H2": "h2-secret-ü", "M-P1": "p1-secret", "SL-1": "l1", "B-1": "b1"}
    kinds = {"M-H1": "household", "M-H2": "household", "M-P1": "solar", "SL-1": "light", "B-1": "battery"}
    path = write_meters(
        tmp_path / "meters.json", grid, [{"meter": m, "secret": s, "profile": kinds[m]} for m, s in secrets.items()]
    )
    acker = Acker(anonymous_mosquitto, grid, secrets)
    broker = f"mqtt://{anonymous_mosquitto.host}:{anonymous_mosquitto.port}"
    common = ["--meters-file", str(path), "--broker", broker, "--speed", "7200", "--tick-ms", "20"]
    common += ["--state-dir", str(tmp_path / "state"), "--hours", "3"]
    try:
        first = run_sim(*common, "--start", "2026-01-01T00:00:00Z")
        assert first.returncode == 0, first.stderr
        second = run_sim(*common, "--start", "2026-01-01T03:00:00Z")
        assert second.returncode == 0, second.stderr
    finally:
        acker.stop()
    lines = first.stdout.splitlines()
    assert lines[0] == f"5 meters on grid {grid!r}, speed 7200x, faults: none"
    progress = [line[:17] for line in lines if line.startswith("2026-")]
    assert progress == ["2026-01-01T00:00Z", "2026-01-01T01:00Z", "2026-01-01T02:00Z"], first.stdout
    assert lines[-1] == "stopped: 15 readings closed, 15 sent, 15 acked, 0 queued", first.stdout
    assert acker.invalid == []
    hours = [f"2026-01-01T{hour:02d}:00:00Z" for hour in range(6)]
    for meter in secrets:
        bodies = [acker.valid.get((meter, hour)) for hour in hours]
        assert None not in bodies, (meter, [hour for hour, body in zip(hours, bodies) if body is None])
        # The second run went on from the journal: seq and registers continue.
        assert [body["seq"] for body in bodies] == [1, 2, 3, 4, 5, 6]
        for before, after in itertools.pairwise(bodies):
            assert after["import_total_wh"] == before["import_total_wh"] + after["import_wh"]
            assert after["export_total_wh"] == before["export_total_wh"] + after["export_wh"]
