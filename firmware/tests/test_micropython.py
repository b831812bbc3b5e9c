"""The pure core runs on a real MicroPython: the WebAssembly build of
MicroPython 1.27 (npm ``@micropython/micropython-webassembly-pyscript``,
pinned in ``firmware/package.json``) under Node. Install it once with
``npm ci --prefix firmware``; a missing Node or package fails, never skips.
Also runs ``esp32.py`` there with stand-in hardware modules (``mp_board/``)."""

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.services
FIRMWARE = Path(__file__).resolve().parent.parent
PACKAGE = FIRMWARE / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.wasm"


def test_pure_core_selfcheck_passes_under_micropython():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (20+) is not installed: it runs MicroPython's WebAssembly build", pytrace=False)
    if not PACKAGE.exists():
        pytest.fail("MicroPython for Node is not installed: run `npm ci --prefix firmware`", pytrace=False)
    result = subprocess.run(
        [node, str(FIRMWARE / "micropython_check.mjs")], capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "micropython (1, 27, 0" in output
    summary = [line for line in result.stdout.splitlines() if line.startswith("selfcheck on micropython:")]
    assert len(summary) == 1, output
    checks_ok = int(summary[0].split(": ")[1].split()[0])
    assert checks_ok >= 50 and summary[0].endswith(" 0 failed")
    # esp32.py, the board glue, against stand-in machine/network/umqtt modules
    assert "esp32 glue on micropython: 11 checks ok, 0 failed" in result.stdout.splitlines()
