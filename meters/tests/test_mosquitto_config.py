"""``manage.py mosquitto_config``: the files it writes, a real Mosquitto running
on exactly those files, the backend password rules, and clean errors."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from meters.broker import acl_text
from meters.credentials import mosquitto_hash_matches
from meters.tests.factories import grid_make, meter_issue
from meters.tests.mosquitto import MqttProbe, connack_code, free_port, mosquitto_binary

NOT_AUTHORIZED = 135


@pytest.fixture
def out_dir():
    # Not under pytest's 0700 tmp dirs: Mosquitto may run as its own user.
    path = Path(tempfile.mkdtemp(prefix="cw-mqconf-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture
def backend_password(monkeypatch):
    monkeypatch.setenv("MQTT_BACKEND_PASSWORD", "backend-pw-for-tests")
    return "backend-pw-for-tests"


def run(*args: str) -> str:
    stdout = io.StringIO()
    call_command("mosquitto_config", *args, stdout=stdout)
    return stdout.getvalue()


def passwd_entries(out: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())


@pytest.mark.django_db
def test_writes_passwd_acl_and_config(out_dir, backend_password):
    grid = grid_make("demo")
    issued = {name: meter_issue(grid, name) for name in ("M-1", "M-2")}
    output = run("--out", str(out_dir), "--port", "1884")
    assert "2 meters + backend" in output and "backend-pw-for-tests" not in output

    assert stat.S_IMODE((out_dir / "passwd").stat().st_mode) == 0o600
    entries = passwd_entries(out_dir)
    assert list(entries) == ["backend", "M-1", "M-2"]
    assert mosquitto_hash_matches(backend_password, entries["backend"])
    for name, meter in issued.items():
        assert mosquitto_hash_matches(meter.secret, entries[name])
    assert (out_dir / "acl").read_text() == acl_text("backend")
    conf = (out_dir / "mosquitto.conf").read_text().splitlines()
    for line in (f"password_file {out_dir}/passwd", f"acl_file {out_dir}/acl", f"persistence_location {out_dir}/data/"):
        assert line in conf
    assert "listener 1884" in conf and "max_queued_messages 1000000" in conf
    assert (out_dir / "data").is_dir()


def start_mosquitto(conf: Path, port: int, password: str) -> subprocess.Popen:
    process = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mosquitto refused the generated config: {process.stderr.read().decode()}")
        try:
            assert connack_code("127.0.0.1", port, "backend", password, timeout_s=2) == 0
            return process
        except TimeoutError:
            time.sleep(0.05)
    process.kill()
    pytest.fail("mosquitto did not start on the generated config")


class _Broker:
    """Enough of ``MosquittoProcess`` for ``MqttProbe``."""

    host = "127.0.0.1"

    def __init__(self, port: int) -> None:
        self.port = port


@pytest.mark.services
@pytest.mark.django_db
def test_a_real_mosquitto_runs_on_the_generated_files_and_reloads_them(out_dir, backend_password):
    grid = grid_make("demo")
    m1 = meter_issue(grid, "M-1")
    port = free_port()
    args = ["--out", str(out_dir), "--port", str(port), "--bind", "127.0.0.1"]
    if os.geteuid() == 0:
        # As root, Mosquitto drops to its own user: the files must be its.
        args += ["--owner", "mosquitto"]
    run(*args)
    process = start_mosquitto(out_dir / "mosquitto.conf", port, backend_password)
    try:
        broker = _Broker(port)
        with MqttProbe(broker, "M-1", m1.secret) as meter:
            assert meter.connect() == 0
            assert meter.publish("grid/demo/meters/M-1/readings", b"{}") in (0, 16)
            assert meter.publish("grid/demo/meters/M-2/readings", b"{}") == NOT_AUTHORIZED
        assert connack_code("127.0.0.1", port, "M-1", "wrong") == NOT_AUTHORIZED

        # An operator adds a meter, regenerates and sends SIGHUP.
        m2 = meter_issue(grid, "M-2")
        assert connack_code("127.0.0.1", port, "M-2", m2.secret) == NOT_AUTHORIZED
        run(*args)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while connack_code("127.0.0.1", port, "M-2", m2.secret) != 0:
            assert time.monotonic() < deadline, "the reloaded broker still refuses M-2"
            time.sleep(0.1)
        assert connack_code("127.0.0.1", port, "M-1", m1.secret) == 0
        assert connack_code("127.0.0.1", port, "backend", backend_password) == 0
    finally:
        process.kill()
        process.wait()


@pytest.mark.django_db
def test_without_the_env_password_one_is_generated_once_then_kept(out_dir, monkeypatch):
    monkeypatch.delenv("MQTT_BACKEND_PASSWORD", raising=False)
    output = run("--out", str(out_dir))
    assert "generated backend password" in output
    password = output.strip().splitlines()[-1]
    first = passwd_entries(out_dir)["backend"]
    assert mosquitto_hash_matches(password, first)

    again = run("--out", str(out_dir))  # no env again: the existing backend line stays
    assert "generated" not in again and password not in again
    assert passwd_entries(out_dir)["backend"] == first

    monkeypatch.setenv("MQTT_BACKEND_PASSWORD", "rotated-pw")
    run("--out", str(out_dir))
    assert mosquitto_hash_matches("rotated-pw", passwd_entries(out_dir)["backend"])


@pytest.mark.django_db
def test_backend_username_option(out_dir, backend_password):
    run("--out", str(out_dir), "--backend-username", "platform")
    assert list(passwd_entries(out_dir)) == ["platform"]
    assert "user platform\n" in (out_dir / "acl").read_text()
    assert settings.MQTT_BACKEND_USERNAME == "backend"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend-username", "bad name"], "not allowed"),
        (["--backend-username", "back:end"], "not allowed"),
        (["--port", "0"], "port must be"),
        (["--owner", "no-such-user-cw"], "no such user"),
        (["--owner", "root:no-such-group-cw"], "no such user or group"),
        (["--owner", ":"], "no such user"),
    ],
)
def test_bad_options_fail_cleanly_and_write_nothing(out_dir, backend_password, args, message):
    with pytest.raises(CommandError, match=message):
        run("--out", str(out_dir), *args)
    assert not (out_dir / "passwd").exists() and not (out_dir / "acl").exists()


@pytest.mark.django_db
def test_a_meter_named_like_the_backend_fails_and_keeps_the_old_files(out_dir, backend_password):
    grid = grid_make("demo")
    meter_issue(grid, "M-1")
    run("--out", str(out_dir))
    before = {name: (out_dir / name).read_bytes() for name in ("passwd", "acl", "mosquitto.conf")}
    meter_issue(grid, "backend")
    with pytest.raises(CommandError, match="appears twice"):
        run("--out", str(out_dir))
    assert {name: (out_dir / name).read_bytes() for name in before} == before


@pytest.mark.django_db
def test_an_empty_env_password_is_an_error(out_dir, monkeypatch):
    monkeypatch.setenv("MQTT_BACKEND_PASSWORD", "")
    with pytest.raises(CommandError, match="set but empty"):
        run("--out", str(out_dir))
    assert not (out_dir / "passwd").exists()


@pytest.mark.django_db
def test_an_out_dir_that_cannot_be_created_is_an_error(out_dir, backend_password):
    (out_dir / "a-file").write_text("x")
    with pytest.raises(CommandError, match="cannot create"):
        run("--out", str(out_dir / "a-file" / "sub"))


def test_the_command_exits_non_zero_with_a_clear_message(out_dir):
    (out_dir / "a-file").write_text("x")
    result = subprocess.run(
        [sys.executable, "manage.py", "mosquitto_config", "--out", str(out_dir / "a-file" / "sub")],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MQTT_BACKEND_PASSWORD": "x"},
    )
    assert result.returncode == 1
    assert "CommandError: cannot create" in result.stderr


@pytest.mark.django_db
def test_owner_takes_numeric_ids_for_the_container_user(out_dir, backend_password):
    if os.geteuid() != 0:
        # Only root may give files away: a clear error, not a traceback.
        with pytest.raises(CommandError, match="cannot write"):
            run("--out", str(out_dir), "--owner", "1883:1883")
        return
    run("--out", str(out_dir), "--owner", "1883:1883")
    for name in ("passwd", "acl", "mosquitto.conf", "data"):
        info = (out_dir / name).stat()
        assert (info.st_uid, info.st_gid) == (1883, 1883), name


@pytest.mark.services
def test_the_shipped_deploy_config_runs_on_a_real_mosquitto(out_dir):
    """deploy/mosquitto/mosquitto.conf with its container paths moved into a
    temp dir and its listener onto a free local port."""
    from meters.broker import password_file_lines
    from meters.credentials import mosquitto_hash

    port = free_port()
    conf = (Path(settings.BASE_DIR) / "deploy/mosquitto/mosquitto.conf").read_text()
    conf = conf.replace("/mosquitto/config/generated/", f"{out_dir}/").replace("/mosquitto/data/", f"{out_dir}/data/")
    conf = conf.replace("\nlistener 1883\n", f"\nlistener {port} 127.0.0.1\n").replace(
        "log_dest stdout", "log_dest stderr"
    )
    if os.geteuid() == 0:
        conf += "user root\n"
    (out_dir / "data").mkdir()
    (out_dir / "mosquitto.conf").write_text(conf)
    (out_dir / "passwd").write_text(password_file_lines("backend", mosquitto_hash("pw"), [])[0] + "\n")
    (out_dir / "acl").write_text(acl_text("backend"))
    process = start_mosquitto(out_dir / "mosquitto.conf", port, "pw")
    try:
        assert connack_code("127.0.0.1", port, "backend", "nope") == NOT_AUTHORIZED
    finally:
        process.kill()
        process.wait()
