"""The README's run command, started for real: the demo grid on the embedded
default (SQLite, its own Mosquitto, the fleet, the embedded beat), bounded in time."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from meters.broker_process import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.services, pytest.mark.slow]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def _settled_runs(database: Path) -> int:
    with sqlite3.connect(database, timeout=30) as db:
        (count,) = db.execute("SELECT count(*) FROM settlement_settlementrun WHERE status = 'settled'").fetchone()
    return count


def test_the_demo_serves_settles_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": "",
        "COMMONWATT_VAR_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "DEMO_MQTT_PORT": str(free_port()),
    }
    log = open(tmp_path / "demo.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--serve", "--addr", f"127.0.0.1:{port}", "--seconds-per-interval", "4"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        while "open http://" not in (tmp_path / "demo.log").read_text():
            assert process.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the demo did not come up"
            time.sleep(1)
        while True:  # the server listens a moment after the banner
            try:
                status, body = _get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the web server did not answer"
                time.sleep(1)
        assert status == 200 and "Commonwatt" in body
        assert _get(f"http://127.0.0.1:{port}/admin/login/")[0] == 200
        while _settled_runs(tmp_path / "commonwatt.sqlite3") < 2:
            assert process.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no interval settled in time"
            time.sleep(1)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    output = (tmp_path / "demo.log").read_text()
    assert "demo stopped" in output, output[-3000:]
    assert code == 0, output[-3000:]
