"""A real JSON-RPC node for the tests: anvil from the pinned npm package
``@foundry-rs/anvil-linux-amd64`` (``npm ci --prefix contracts``).

``AnvilProcess`` runs anvil on 127.0.0.1 and a free port with ``--state``, so
stopping it (SIGTERM: it dumps its chain on exit) and starting it again keeps
the chain: that is what a node restart means here. It is stopped by its pid.
A missing binary fails the test, never skips it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CONTRACTS = Path(__file__).resolve().parent.parent
ANVIL = CONTRACTS / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
# anvil's well-known development keys (its default mnemonic): #0 operates,
# #1 plays a stranger who must not be able to write.
OPERATOR_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
STRANGER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
START_TIMEOUT_S = 15.0


def anvil_binary() -> str:
    """Path of anvil (``ANVIL_BIN`` wins); raises with the fix when absent."""
    candidate = os.environ.get("ANVIL_BIN") or str(ANVIL)
    if not os.access(candidate, os.X_OK):
        raise RuntimeError(f"anvil is not installed at {candidate}: run `npm ci --prefix contracts`")
    return candidate


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AnvilProcess:
    """One anvil node whose chain survives ``stop()`` + ``start()``."""

    def __init__(self, workdir: Path) -> None:
        self.binary = anvil_binary()
        self.port = free_port()
        self.state = workdir / "anvil-state.json"
        self.log = workdir / "anvil.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--state", str(self.state)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"anvil exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            if self.block_number() is not None:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"anvil did not answer on {self.url} within {START_TIMEOUT_S} s")

    def _call(self, method: str, params: list) -> object:
        """One JSON-RPC call's result; raises ``OSError`` when the node does not answer."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=1) as response:
            return json.loads(response.read())["result"]

    def block_number(self) -> int | None:
        try:
            return int(self._call("eth_blockNumber", []), 16)
        except OSError:
            return None

    def wait_receipt(self, tx_hash: str, timeout_s: float = 10.0) -> None:
        """Wait until the node has mined ``tx_hash`` into a block it knows."""
        deadline = time.monotonic() + timeout_s
        while self._call("eth_getTransactionReceipt", [tx_hash]) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"anvil did not mine {tx_hash} within {timeout_s} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM by pid (anvil writes its state on the way out), then wait."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        # The port is free once the process is gone; the state file is written.

    def restart(self) -> None:
        self.stop()
        self.start()
