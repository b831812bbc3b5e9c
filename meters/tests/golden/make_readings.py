"""Write ``readings.json``: ``python -m meters.tests.golden.make_readings > meters/tests/golden/readings.json``.

The file is the contract; regenerate it only when the contract changes (the
tests recompute every signature with plain HMAC over the ``canonical`` text,
so a change to the signing code cannot pass by regenerating).
"""

import json

from meters.protocol import canonical_body, sign

SECRET = "q3J8vH0m2x_Rk5TzW1cYb7NfLp4sAe9D"
OTHER = "Zx9-other-meters-secret-0000000A"
T = "grid/golden/meters/golden-1/readings"
RECEIVED = "2026-01-05T00:02:00Z"


def case(name, body, expect, *, secret=SECRET, raw=None, topic=T, note="", tamper=None):
    payload = dict(body)
    if secret is not None:
        payload["sig"] = sign(secret, body)
    if tamper:
        payload.update(tamper)
    text = raw(payload) if raw else json.dumps(payload, ensure_ascii=False)
    entry = {"name": name}
    if note:
        entry["note"] = note
    entry.update(
        {
            "topic": topic,
            "received_at": RECEIVED,
            "payload": text,
            "canonical": canonical_body(json.loads(text)).decode(),
        }
    )
    if secret is not None:
        entry["sig"] = payload["sig"]
        entry["signed_with"] = "meter" if secret == SECRET else "another meter's secret"
        if tamper:
            entry["signed_with"] = "meter, then values changed: " + ", ".join(sorted(tamper))
    entry["expect"] = expect
    return entry


def body(seq, start, imp, imp_total, exp=0, exp_total=0, **extra):
    b = {
        "v": 1,
        "meter": "golden-1",
        "seq": seq,
        "period_start": start,
        "period_s": 3600,
        "import_wh": imp,
        "export_wh": exp,
        "import_total_wh": imp_total,
        "export_total_wh": exp_total,
    }
    b.update(extra)
    return b


def acc():
    return {"status": "accepted", "reason": None}


def rej(reason):
    return {"status": "rejected", "reason": reason}


def main():
    b1 = body(1, "2026-01-04T20:00:00Z", 412, 10412, 0, 0)
    b2 = body(2, "2026-01-04T21:00:00Z", 250, 10662, 15, 15, v_min=228.4, v_max=241)
    cases = [
        case("first reading", b1, acc()),
        case(
            "next interval, voltages, keys in the meter's own order with spaces",
            b2,
            acc(),
            raw=lambda p: (
                "{ "
                + ", ".join(
                    f'"{k}": {json.dumps(p[k])}'
                    for k in [
                        "sig",
                        "v_max",
                        "meter",
                        "v",
                        "seq",
                        "period_s",
                        "period_start",
                        "import_wh",
                        "export_wh",
                        "import_total_wh",
                        "export_total_wh",
                        "v_min",
                    ]
                )
                + " }"
            ),
            note="v_min 228.4 V is stored as 2284 decivolts; the canonical body is what was signed",
        ),
        case(
            "the same reading sent again",
            b2,
            {"status": "duplicate", "reason": None},
            note="firmware resends until acked; stored once",
        ),
        case("same interval, other values", body(3, "2026-01-04T21:00:00Z", 251, 10663, 15, 15), rej("conflict")),
        case(
            "signed with another meter's secret",
            body(3, "2026-01-04T22:00:00Z", 300, 10962, 15, 15),
            rej("bad_signature"),
            secret=OTHER,
        ),
        case(
            "value changed after signing",
            body(3, "2026-01-04T22:00:00Z", 300, 10962, 15, 15),
            rej("bad_signature"),
            tamper={"import_wh": 3, "import_total_wh": 10665},
        ),
        case(
            "energy does not match the totals",
            body(3, "2026-01-04T22:00:00Z", 300, 10900, 15, 15),
            rej("totals_inconsistent"),
            note="next interval: import_wh must equal import_total_wh minus the previous total (10662)",
        ),
        case(
            "a float where an integer belongs", body(3, "2026-01-04T22:00:00Z", 300.0, 10962, 15, 15), rej("bad_field")
        ),
        case("period not on the hour", body(3, "2026-01-04T22:30:00Z", 300, 10962, 15, 15), rej("unaligned_period")),
        case(
            "interval not over yet",
            body(3, "2026-01-05T00:00:00Z", 300, 10962, 15, 15),
            rej("future_period"),
            note="received 00:02Z; [00:00, 01:00) ends after 00:02 + 5 min skew",
        ),
        case(
            "payload meter is not the topic meter",
            {**body(3, "2026-01-04T22:00:00Z", 300, 10962, 15, 15), "meter": "golden-2"},
            rej("topic_mismatch"),
        ),
        case(
            "unicode meter id (no such meter)",
            {**body(3, "2026-01-04T22:00:00Z", 300, 10962, 15, 15), "meter": "gölden-1"},
            rej("unknown_meter"),
            topic="grid/golden/meters/gölden-1/readings",
            note="non-ASCII is signed as raw UTF-8, never \\u escapes",
        ),
        case("seq not above the last accepted", body(2, "2026-01-04T22:00:00Z", 300, 10962, 15, 15), rej("stale_seq")),
        case(
            "after a gap: totals rose by at least this interval",
            body(9, "2026-01-05T00:00:00Z", 120, 11500, 0, 15),
            acc(),
            note="22:00 and 23:00 never reported; 11500 - 10662 = 838 >= 120. Received at 01:02Z.",
        ),
    ]
    cases[-1]["received_at"] = "2026-01-05T01:02:00Z"
    doc = {
        "about": "Golden MQTT reading payloads for firmware makers and the ingest tests. Each case is published "
        "in order to `topic` by meter golden-1 (grid golden, hourly intervals) whose secret is `secret`. "
        "`payload` is the exact text sent; `canonical` is the body the signature covers (payload without sig, "
        "keys sorted, separators ',' and ':', non-ASCII as UTF-8); `sig` = lowercase hex HMAC-SHA256(key = UTF-8 of "
        "the secret, message = UTF-8 of canonical). `expect` is the ack the backend sends back.",
        "grid": {"slug": "golden", "interval_s": 3600},
        "meter": {"public_id": "golden-1", "secret": SECRET},
        "cases": cases,
    }
    print(json.dumps(doc, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
