"""The meter's durable journal: an append-only log of records, compacted by
atomic rename. Survives a reboot or a power cut at any byte.

A record is a small JSON object on one line, followed by a space and a check
(the first 8 hex digits of its SHA-256)::

    {"st":{...},"t":"s"} 1f2e3d4c

Every record carries the meter's whole state (registers, seq, last decision…),
so the newest valid one wins; queue changes ride along (``"r"``: a reading was
closed, ``"x"``: a reading left the queue). A torn or corrupt line (power cut
mid-write, a flipped bit) fails its check and is skipped.

Compaction writes the current state and the queued readings to ``<name>.new``,
ends it with an ``end`` record, flushes, and renames it over ``<name>.log``
(atomic on LittleFS and POSIX). On boot: a ``.log`` wins and a stray ``.new``
is an unfinished compaction (deleted); a ``.new`` alone is a compaction whose
rename had to remove the old log first (FAT) and is used only if it is complete.
"""

import binascii
import hashlib
import json
import os

from firmware.signing import canonical_text

END = "end"


def _check(text_bytes):
    return binascii.hexlify(hashlib.sha256(text_bytes).digest()[:4])


def frame(record):
    """One journal line (bytes) for ``record`` (a dict of JSON-able values)."""
    text = canonical_text(record).encode("utf-8")
    return text + b" " + _check(text) + b"\n"


def unframe(line):
    """The record of a complete line (ending in a newline); None if torn or corrupt."""
    if not line.endswith(b"\n"):
        return None
    body = line[:-1]
    cut = body.rfind(b" ")
    if cut < 0 or body[cut + 1 :] != _check(body[:cut]):
        return None
    try:
        record = json.loads(body[:cut].decode("utf-8"))
    except (ValueError, UnicodeError):
        return None
    return record if isinstance(record, dict) else None


class MemoryJournal:
    """The journal in RAM (tests, simulator): the same framing, and it outlives
    a ``Meter``, so a new instance over it is a reboot. ``tear(n)`` cuts the
    last ``n`` bytes, like a power cut in the middle of the last write."""

    def __init__(self):
        self.data = b""
        self.corrupt = 0

    def load(self):
        records = []
        self.corrupt = 0
        for line in self.data.split(b"\n")[:-1]:
            record = unframe(line + b"\n")
            if record is None:
                self.corrupt += 1
            elif record.get("t") != END:
                records.append(record)
        if not self.data.endswith(b"\n") and self.data:
            self.corrupt += 1
        return records

    def append(self, record):
        self.data += frame(record)

    def rewrite(self, records):
        lines = [frame(record) for record in records]
        lines.append(frame({"t": END, "n": len(records)}))
        self.data = b"".join(lines)

    def size(self):
        return len(self.data)

    def tear(self, nbytes):
        self.data = self.data[: max(0, len(self.data) - nbytes)]


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _sync(handle):
    handle.flush()
    # CPython: flush reaches the OS, fsync reaches the disk. MicroPython's
    # flush already commits the file on LittleFS, and its os has no fsync.
    if hasattr(os, "fsync"):
        os.fsync(handle.fileno())


def _sync_dir(directory):
    if hasattr(os, "fsync") and hasattr(os, "O_RDONLY"):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _read(path):
    """(records without end markers, complete, corrupt lines) of one journal file."""
    records = []
    complete = False
    corrupt = 0
    with open(path, "rb") as handle:
        while True:
            line = handle.readline()
            if not line:
                break
            record = unframe(line)
            if record is None:
                corrupt += 1
                complete = False
            elif record.get("t") == END:
                complete = record.get("n") == len(records)
            else:
                records.append(record)
                complete = False
    return records, complete, corrupt


class FileJournal:
    """The journal in ``directory`` on flash (``journal.log``, ``journal.new``)."""

    def __init__(self, directory, name="journal"):
        self.directory = directory
        self.path = directory + "/" + name + ".log"
        self.new_path = directory + "/" + name + ".new"
        self.corrupt = 0
        self._size = 0
        if not _exists(directory):
            os.mkdir(directory)

    def load(self):
        records = []
        self.corrupt = 0
        if _exists(self.path):
            records, _complete, self.corrupt = _read(self.path)
            if _exists(self.new_path):
                os.remove(self.new_path)
        elif _exists(self.new_path):
            records, complete, self.corrupt = _read(self.new_path)
            if complete:
                os.rename(self.new_path, self.path)
            else:
                records = []
                os.remove(self.new_path)
        self._size = os.stat(self.path)[6] if _exists(self.path) else 0
        return records

    def append(self, record):
        line = frame(record)
        with open(self.path, "ab") as handle:
            handle.write(line)
            _sync(handle)
        self._size += len(line)

    def rewrite(self, records):
        size = 0
        with open(self.new_path, "wb") as handle:
            for record in records:
                line = frame(record)
                handle.write(line)
                size += len(line)
            end = frame({"t": END, "n": len(records)})
            handle.write(end)
            _sync(handle)
        try:
            os.rename(self.new_path, self.path)
        except OSError:
            # FAT cannot rename over a file: remove it first. A cut here
            # leaves only the complete .new, which load() takes.
            os.remove(self.path)
            os.rename(self.new_path, self.path)
        _sync_dir(self.directory)
        self._size = size + len(end)

    def size(self):
        return self._size
