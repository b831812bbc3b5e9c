"""A self-check of the firmware's pure core that any MicroPython can run.

On a board (after copying ``firmware/`` and ``firmware/golden/``)::

    >>> import firmware.selfcheck
    >>> firmware.selfcheck.main("/golden", "/selfcheck-tmp")

``micropython_check.mjs`` runs it under MicroPython's WebAssembly build in
Node. It signs every golden payload and compares bytes and signatures, checks
HMAC against RFC 4231, the bounded queue, decision acceptance and rejection,
and a meter that closes intervals on a file journal, loses power, reboots,
sends its backlog and deletes only what is acknowledged.
"""

import binascii
import json
import os
import sys

from firmware.backlog import Backlog, reading_body
from firmware.decisions import decision_parse
from firmware.drivers import ManualClock, MemoryRelay, ScriptedSource
from firmware.journal import FileJournal
from firmware.meter import Meter
from firmware.signing import Signer, canonical_body, canonical_text, hmac_sha256, wire
from firmware.timefmt import utc_parse, utc_text
from firmware.transport_memory import MemoryBroker, MemoryTransport


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, name, ok):
        if ok:
            self.passed += 1
        else:
            self.failed.append(name)
            print("FAILED: " + name)


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _golden(checks, golden_dir):
    cases = json.loads(_read(golden_dir + "/cases.json").decode("utf-8"))
    checks.check("golden cases present", len(cases) >= 6)
    for case in cases:
        name = case["name"]
        signer = Signer(case["secret"])
        payload = _read(golden_dir + "/" + name + ".payload.json")
        canonical = _read(golden_dir + "/" + name + ".canonical")
        checks.check(
            name + ": secret bytes", case["secret"].encode("utf-8") == binascii.unhexlify(case["secret_utf8_hex"])
        )
        if case["reading"] is not None:
            meter = case["topic"].split("/")[3]
            body = reading_body(meter, tuple(case["reading"]), True)
            checks.check(name + ": canonical bytes", canonical_body(body) == canonical)
            checks.check(name + ": signature", signer.sign(body) == case["sig"])
            checks.check(name + ": wire bytes", wire(signer.signed(body)) == payload)
        elif name.startswith("decision"):
            decision, why = decision_parse(payload, signer, 0)
            checks.check(name + ": accepted", why is None and decision["sig"] == case["sig"])
            checks.check(name + ": canonical bytes", canonical_body(decision) == canonical)
            _, why = decision_parse(payload, signer, decision["seq"])
            checks.check(name + ": replay is stale", why == "stale_seq")
            _, why = decision_parse(payload, Signer("another meter's secret"), 0)
            checks.check(name + ": other key rejected", why == "bad_signature")
            forged = dict(decision)
            forged["state"] = "connect" if decision["state"] == "disconnect" else "disconnect"
            _, why = decision_parse(canonical_text(forged).encode(), signer, 0)
            checks.check(name + ": forged state rejected", why == "bad_signature")
            unsigned = dict(decision)
            del unsigned["sig"]
            _, why = decision_parse(canonical_text(unsigned).encode(), signer, 0)
            checks.check(name + ": unsigned rejected", why == "bad_signature")
        else:
            body = json.loads(payload.decode("utf-8"))
            checks.check(name + ": canonical bytes", canonical_body(body) == canonical)
            checks.check(name + ": signature", signer.valid(body) and signer.sign(body) == case["sig"])


def _hmac(checks):
    # RFC 4231 test cases 1, 2 and 6 (a 131-byte key).
    checks.check(
        "rfc4231 case 1",
        hmac_sha256(b"\x0b" * 20, b"Hi There")
        == binascii.unhexlify("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    )
    checks.check(
        "rfc4231 case 2",
        hmac_sha256(b"Jefe", b"what do ya want for nothing?")
        == binascii.unhexlify("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    )
    checks.check(
        "rfc4231 case 6",
        hmac_sha256(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First")
        == binascii.unhexlify("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    )
    checks.check("utc text", utc_text(1767261600) == "2026-01-01T10:00:00Z")
    checks.check("utc parse", utc_parse("2024-02-29T23:59:59Z") == 1709251199)
    checks.check("canonical escapes", canonical_text({"b": 'q"\\\n\x01', "a": [True, None, -3]}) == _ESCAPED)


_ESCAPED = '{"a":[true,null,-3],"b":"q\\"\\\\\\n\\u0001"}'


def _queue(checks):
    queue = Backlog(2)
    checks.check("queue push", queue.push((1,) + (0,) * 6 + (None, None, "ntp")))
    checks.check("queue push 2", queue.push((2,) + (0,) * 6 + (None, None, "ntp")))
    checks.check("queue full keeps oldest", not queue.push((3,) + (0,) * 6 + (None, None, "ntp")))
    checks.check("queue order", queue.seqs() == [1, 2])
    checks.check("queue pop", queue.remove(1)[0] == 1 and queue.seqs() == [2] and queue.remove(9) is None)


def _meter(checks, work_dir):
    broker = MemoryBroker()
    clock = ManualClock(1767261600 - 10)
    source = ScriptedSource()
    config = {"grid": "g", "meter": "m-1", "secret": "s3cret", "interval_s": 900}
    base = "grid/g/meters/m-1/"

    def start():
        relay = MemoryRelay()
        meter = Meter(config, source, relay, clock, FileJournal(work_dir), MemoryTransport(broker))
        return meter, relay

    broker.stop()
    meter, relay = start()
    meter.tick()
    for _ in range(2):
        source.add(120, 7)
        clock.advance(900)
        meter.tick()
    checks.check("two intervals queued offline", meter.queued_seqs() == [1, 2])
    meter, relay = start()  # a power cut: the old instance is simply gone
    meter.tick()
    checks.check("backlog survives a power cut", meter.queued_seqs() == [1, 2])
    broker.start()
    clock.advance(2)
    meter.tick()
    sent = [json.loads(p.decode()) for t, p, r in broker.published if t == base + "readings"]
    checks.check("backlog sent in seq order", [body["seq"] for body in sent] == [1, 2])
    checks.check("sent readings are signed", Signer("s3cret").valid(sent[0]))
    checks.check("registers", sent[1]["import_total_wh"] == 240 and sent[1]["import_wh"] == 120)
    broker.publish(base + "ack", b'{"seq":1,"status":"rejected","reason":"future_period"}')
    meter.tick()
    checks.check("retryable rejection keeps the reading", meter.queued_seqs() == [1, 2])
    broker.publish(base + "ack", b'{"seq":1,"status":"accepted","reason":null}')
    meter.tick()
    checks.check("accepted reading deleted", meter.queued_seqs() == [2])
    signer = Signer("s3cret")
    decision = signer.signed({"state": "disconnect", "reason": "low_balance", "balance_uk": -5, "seq": 3})
    broker.publish(base + "decision", wire(decision), True)
    meter.tick()
    checks.check("signed decision applied", relay.closed is False and meter.state["dseq"] == 3)
    meter, relay = start()
    meter.tick()
    checks.check("decision survives reboot", relay.closed is False and meter.queued_seqs() == [2])
    checks.check("retained stale decision ignored", meter.counters["decisions_ignored"] == 1)


def _clean(work_dir):
    try:
        names = os.listdir(work_dir)
    except OSError:
        return
    for name in names:
        if name.startswith("journal."):
            os.remove(work_dir + "/" + name)


def main(golden_dir, work_dir):
    """Run every check; print one summary line; raise ``AssertionError`` on a failure."""
    _clean(work_dir)
    checks = Checks()
    _golden(checks, golden_dir)
    _hmac(checks)
    _queue(checks)
    _meter(checks, work_dir)
    implementation = sys.implementation.name
    print(
        "selfcheck on "
        + implementation
        + ": "
        + str(checks.passed)
        + " checks ok, "
        + str(len(checks.failed))
        + " failed"
    )
    if checks.failed:
        raise AssertionError("selfcheck failed: " + ", ".join(checks.failed))
    return checks.passed
