"""A paho client that reads its socket 64 KiB at a time.

paho 2.2 reads each packet with about four ``recv`` calls (the type byte, the
length bytes one by one, the body). Every call releases Python's GIL, and in
the ingest the main thread is busy verifying and storing the previous batch:
each time the network thread wants the GIL back it waits for the main thread's
switch interval, so it reads a handful of packets per batch instead of
thousands. Reading ahead makes that one system call (and one GIL hand-over)
per many packets.

``pending()`` tells paho's loop that bytes are already buffered, exactly as it
does for TLS sockets, so the loop never sleeps in ``select()`` on data it has
already read. Everything else goes straight to the real socket.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt

READ_AHEAD_BYTES = 65_536


class ReadAheadSocket:
    """Wraps a connected (non-blocking) socket; serves small reads from one large one."""

    def __init__(self, sock: Any, chunk_bytes: int = READ_AHEAD_BYTES) -> None:
        self._sock = sock
        self._chunk_bytes = chunk_bytes
        self._buffer = b""
        self._offset = 0

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; raises what the socket raises when nothing is
        buffered and nothing can be read (``BlockingIOError``), ``b""`` at EOF."""
        if self._offset >= len(self._buffer):
            data = self._sock.recv(max(size, self._chunk_bytes))
            if not data:
                return data
            self._buffer, self._offset = data, 0
        chunk = self._buffer[self._offset : self._offset + size]
        self._offset += len(chunk)
        return chunk

    def pending(self) -> int:
        """Bytes read but not yet handed to paho (plus what TLS holds decrypted)."""
        inner = getattr(self._sock, "pending", None)
        return len(self._buffer) - self._offset + (inner() if inner else 0)

    def send(self, data: bytes | bytearray) -> int:
        return self._sock.send(data)

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        self._buffer, self._offset = b"", 0
        self._sock.close()


class ReadAheadClient(mqtt.Client):
    """``paho.mqtt.client.Client`` whose every connection reads ahead.

    Overrides paho's ``_create_socket`` (paho-mqtt is pinned to 2.2.0 in
    requirements.txt; its websocket transport wraps the socket the same way)."""

    def _create_socket(self) -> Any:
        return ReadAheadSocket(super()._create_socket())
