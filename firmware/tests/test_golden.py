"""The golden payloads are what CPython's json + hmac produce, and what the firmware produces."""

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from firmware.backlog import reading_body
from firmware.decisions import decision_parse
from firmware.signing import Signer, canonical_body, wire

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))


def reference(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_every_kind_of_message_has_a_golden_case():
    names = {case["name"] for case in CASES}
    assert {"reading-minimal", "reading-clock-voltage", "decision-disconnect", "state"} <= names
    assert any(len(case["secret"].encode()) > 64 for case in CASES)
    assert any(not case["secret"].isascii() for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_golden_files_are_the_standard_library_reference(case):
    payload_bytes = (GOLDEN / f"{case['name']}.payload.json").read_bytes()
    canonical = (GOLDEN / f"{case['name']}.canonical").read_bytes()
    payload = json.loads(payload_bytes)
    assert payload == case["payload"]
    body = {key: value for key, value in payload.items() if key != "sig"}
    assert reference(body) == canonical == case["canonical"].encode()
    assert hmac.new(case["secret"].encode(), canonical, hashlib.sha256).hexdigest() == case["sig"] == payload["sig"]
    assert reference(payload) == payload_bytes
    assert bytes.fromhex(case["secret_utf8_hex"]) == case["secret"].encode()


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_firmware_reproduces_golden_bytes(case):
    payload_bytes = (GOLDEN / f"{case['name']}.payload.json").read_bytes()
    canonical = (GOLDEN / f"{case['name']}.canonical").read_bytes()
    signer = Signer(case["secret"])
    if case["reading"] is not None:
        meter = case["topic"].split("/")[3]
        body = reading_body(meter, tuple(case["reading"]))
        assert canonical_body(body) == canonical
        assert wire(signer.signed(body)) == payload_bytes
    elif case["name"].startswith("decision"):
        decision, why = decision_parse(payload_bytes, signer, 0)
        assert why is None
        assert canonical_body(decision) == canonical
    else:
        assert wire(signer.signed(json.loads(canonical))) == payload_bytes
