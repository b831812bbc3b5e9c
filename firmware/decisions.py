"""Whether a ``decision`` message must be obeyed.

The backend publishes ``{"state": "connect"|"disconnect", "reason",
"balance_uk", "issued_at", "seq", "sig"}`` retained on
``grid/<grid>/meters/<meter>/decision``, signed like a reading with the
meter's own secret. A meter applies one only if its signature is valid and its
``seq`` is above the last one it applied (persisted across reboots), so a
forged, unsigned, replayed or stale (retained, older) message changes nothing.
"""

import json

STATES = ("connect", "disconnect")


def decision_parse(payload, signer, last_seq):
    """Check a raw decision ``payload`` (bytes) against ``signer`` (the meter's
    ``Signer``) and ``last_seq`` (the seq last applied, 0 for none).

    Returns ``(decision, None)`` when it must be applied, else ``(None, why)``
    with ``why`` one of: empty (a cleared retained message), bad_json,
    not_object, bad_signature (missing, malformed or wrong ``sig``), bad_state,
    bad_seq, stale_seq. The signature is checked first, so anything forged is
    ``bad_signature`` whatever else it says.
    """
    if not payload:
        return None, "empty"
    try:
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
        body = json.loads(text)
    except (ValueError, UnicodeError):
        return None, "bad_json"
    if not isinstance(body, dict):
        return None, "not_object"
    if not signer.valid(body):
        return None, "bad_signature"
    if body.get("state") not in STATES:
        return None, "bad_state"
    seq = body.get("seq")
    if type(seq) is not int or seq < 1:
        return None, "bad_seq"
    if seq <= last_seq:
        return None, "stale_seq"
    return body, None
