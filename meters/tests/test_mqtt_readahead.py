"""The read-ahead socket paho's ingest client uses: small reads served from one
large read, ``pending()`` for paho's loop, EOF and "nothing yet" passed through."""

from __future__ import annotations

import socket

import pytest

from meters.mqtt_readahead import ReadAheadSocket


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    right.setblocking(False)
    yield left, ReadAheadSocket(right, chunk_bytes=1024)
    left.close()
    right.close()


def test_small_reads_are_served_from_one_system_call(pair):
    peer, wrapped = pair
    peer.sendall(b"\x30\x05hello" + b"\x40\x02\x00\x01")

    assert wrapped.recv(1) == b"\x30"
    assert wrapped.pending() == 10
    peer.sendall(b"later")  # not read until the buffer is used up
    assert wrapped.recv(1) == b"\x05"
    assert wrapped.recv(5) == b"hello"
    assert wrapped.recv(100) == b"\x40\x02\x00\x01"  # never more than was buffered
    assert wrapped.pending() == 0
    assert wrapped.recv(100) == b"later"


def test_nothing_to_read_raises_like_the_socket_and_eof_is_empty(pair):
    peer, wrapped = pair

    with pytest.raises(BlockingIOError):
        wrapped.recv(1)
    peer.shutdown(socket.SHUT_WR)
    assert wrapped.recv(1) == b""


def test_writes_and_the_descriptor_go_to_the_socket(pair):
    peer, wrapped = pair

    assert wrapped.send(b"ping") == 4
    assert peer.recv(4) == b"ping"
    assert wrapped.fileno() == wrapped._sock.fileno()
