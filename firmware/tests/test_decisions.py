"""Decisions: only a valid signature with a higher seq moves the relay; a
disconnected meter still measures and reports."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.decisions import decision_parse
from firmware.signing import Signer, wire

from .conftest import BASE, SECRET, Backend, Rig

SIGNER = Signer(SECRET)


def decision(seq, state="disconnect", signer=SIGNER, **extra):
    body = {
        "state": state,
        "reason": "low_balance" if state == "disconnect" else "funded",
        "balance_uk": -10 if state == "disconnect" else 5_000_000,
        "issued_at": "2026-01-01T01:00:00Z",
        "seq": seq,
        **extra,
    }
    return wire(signer.signed(body))


def test_a_signed_newer_decision_drives_the_relay_and_is_reported(rig):
    assert rig.relay.closed is True  # a new meter starts connected (initial_state)
    rig.decide(decision(1, "disconnect"))
    assert rig.relay.closed is False
    state = json.loads(rig.broker.retained[BASE + "state"])
    assert (state["state"], state["decision_seq"]) == ("disconnect", 1)
    assert SIGNER.valid(state)
    rig.decide(decision(2, "connect"))
    assert rig.relay.closed is True
    assert json.loads(rig.broker.retained[BASE + "state"])["decision_seq"] == 2


def forged_payloads():
    other = Signer("not-the-meter-secret")
    good = json.loads(decision(5, "connect"))
    tampered = dict(good, balance_uk=10**9)
    unsigned = {key: value for key, value in good.items() if key != "sig"}
    return {
        "other key": decision(5, "connect", signer=other),
        "tampered": wire(tampered),
        "unsigned": wire(unsigned),
        "empty sig": wire(dict(unsigned, sig="")),
        "upper-case sig": wire(dict(good, sig=good["sig"].upper())),
        "not json": b"\xff{connect",
        "a list": b'["connect"]',
        "float inside": json.dumps(dict(good, balance_uk=1.5)).encode(),
    }


@pytest.mark.parametrize("name", sorted(forged_payloads()))
def test_forged_or_unsigned_decisions_are_ignored(rig, name):
    rig.decide(decision(4, "disconnect"))
    rig.decide(forged_payloads()[name])
    assert rig.relay.closed is False
    assert rig.meter.state["dseq"] == 4
    assert rig.meter.counters["decisions_ignored"] == 1


def test_stale_and_replayed_decisions_are_ignored_even_after_reboot(rig):
    old_connect = decision(3, "connect")
    rig.decide(decision(7, "disconnect"))
    rig.decide(old_connect)  # lower seq
    rig.decide(decision(7, "connect"))  # equal seq, validly signed
    assert rig.relay.closed is False
    assert rig.meter.counters["decisions_ignored"] == 2
    rig.reboot()  # the retained seq-7 disconnect is delivered again on subscribe
    assert rig.relay.closed is False
    assert rig.meter.state["dseq"] == 7
    assert rig.meter.counters["decisions_ignored"] == 1
    rig.decide(old_connect)
    assert rig.relay.closed is False
    rig.decide(decision(8, "connect"))
    assert rig.relay.closed is True


def test_a_cleared_retained_decision_is_not_an_error(rig):
    rig.decide(b"")
    assert rig.meter.counters["decisions_ignored"] == 0 and rig.relay.closed is True


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_apply(payload):
    result, why = decision_parse(payload, SIGNER, 0)
    assert result is None and why


def test_a_disconnected_meter_still_measures_and_reports():
    rig = Rig()
    backend = Backend(rig.broker)
    rig.decide(decision(1, "disconnect"))
    rig.source.add(42, 3)
    rig.run(900, step=60, backend=backend)
    assert rig.relay.closed is False
    assert (backend.received[1]["import_wh"], backend.received[1]["export_wh"]) == (42, 3)
