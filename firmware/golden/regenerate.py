"""Regenerate the golden payloads with CPython's standard library only.

    python firmware/golden/regenerate.py

This is the reference the firmware is checked against: ``json.dumps(body,
sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` in UTF-8, and
``hmac`` with SHA-256 keyed with the UTF-8 bytes of the secret. The secrets
below are public test secrets: never issue them to a meter.
"""

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECRET_ASCII = "golden-test-secret-0001"  # noqa: S105 - a published test vector
SECRET_UTF8 = "clé-secrète-☀-0002"  # noqa: S105 - non-ASCII: the key is its UTF-8 bytes
# 99 bytes: longer than the 64-byte block, so HMAC hashes the key first.
SECRET_LONG = "golden-long-secret-" * 5 + "0003"


def _epoch(text):
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def _reading(meter, fields, clock=None, volts=None):
    seq, start, period_s, import_wh, export_wh, import_total_wh, export_total_wh = fields
    body = {
        "v": 1,
        "meter": meter,
        "seq": seq,
        "period_start": start,
        "period_s": period_s,
        "import_wh": import_wh,
        "export_wh": export_wh,
        "import_total_wh": import_total_wh,
        "export_total_wh": export_total_wh,
    }
    if volts:
        body["v_min"], body["v_max"] = volts[0] / 10, volts[1] / 10
    if clock:
        body["clock"] = clock
    reading = [seq, _epoch(start), period_s, import_wh, export_wh, import_total_wh, export_total_wh]
    reading += [volts[0] if volts else None, volts[1] if volts else None, clock]
    return body, reading


def _cases():
    minimal, minimal_reading = _reading("m-0001", (42, "2026-01-01T10:00:00Z", 3600, 1234, 0, 98120, 0))
    full, full_reading = _reading(
        "m-0002", (7, "2026-06-21T12:00:00Z", 3600, 15, 2875, 40215, 1203344), clock="ntp", volts=(2284, 2410)
    )
    short, short_reading = _reading(
        "street-light-9", (1, "2026-03-01T00:15:00Z", 900, 0, 0, 0, 0), clock="unsynced", volts=(2300, 2300)
    )
    return [
        ("reading-minimal", "readings", "demo", SECRET_ASCII, minimal, minimal_reading),
        ("reading-clock-voltage", "readings", "demo", SECRET_ASCII, full, full_reading),
        ("reading-utf8-secret", "readings", "village-2", SECRET_UTF8, short, short_reading),
        (
            "decision-disconnect",
            "decision",
            "demo",
            SECRET_ASCII,
            {
                "state": "disconnect",
                "reason": "low_balance",
                "balance_uk": -1500000,
                "issued_at": "2026-01-01T11:00:07Z",
                "seq": 7,
            },
            None,
        ),
        (
            "decision-connect-long-secret",
            "decision",
            "demo",
            SECRET_LONG,
            {
                "state": "connect",
                "reason": "funded",
                "balance_uk": 2500000,
                "issued_at": "2026-01-01T11:20:00Z",
                "seq": 8,
            },
            None,
        ),
        (
            "state",
            "state",
            "demo",
            SECRET_ASCII,
            {
                "v": 1,
                "meter": "m-0001",
                "state": "disconnect",
                "decision_seq": 7,
                "clock": "ntp",
                "queued": 2,
                "dropped": 0,
                "dead_letter": 1,
            },
            None,
        ),
    ]


def _dumps(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def main():
    manifest = []
    for name, topic, grid, secret, body, reading in _cases():
        canonical = _dumps(body)
        sig = hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()
        payload = dict(body, sig=sig)
        meter = body.get("meter", "m-0001")
        (HERE / f"{name}.canonical").write_bytes(canonical)
        (HERE / f"{name}.payload.json").write_bytes(_dumps(payload))
        manifest.append(
            {
                "name": name,
                "topic": f"grid/{grid}/meters/{meter}/{topic}",
                "secret": secret,
                "secret_utf8_hex": secret.encode().hex(),
                "canonical": canonical.decode(),
                "sig": sig,
                "payload": payload,
                "reading": reading,
            }
        )
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (HERE / "cases.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
