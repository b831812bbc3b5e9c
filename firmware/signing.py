"""Canonical JSON and HMAC-SHA256: the bytes a reading or decision signature covers.

The contract (SPEC.md): ``sig`` is the lowercase hex HMAC-SHA256, keyed with the
UTF-8 bytes of the meter's secret, over the payload without ``sig`` serialised as
CPython's ``json.dumps(body, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` in UTF-8.

MicroPython's ``json.dumps`` cannot sort keys (its dicts are not even ordered)
and ESP32 builds ship no ``hmac``, so both are written out here for the payload
shapes we use: str, int, bool, None, dict (str keys), list/tuple, and
``Tenths`` (a decimal with one digit, e.g. volts). Floats are refused: their
text differs between a single-precision board and CPython.
"""

import binascii
import hashlib

_BLOCK = 64
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_HEX = "0123456789abcdef"


class Tenths:
    """A non-negative number with one decimal, held as integer tenths.

    ``Tenths(2293)`` serialises as ``229.3``; ``Tenths(2410)`` as ``241.0``:
    exactly CPython's ``repr`` of that float, so the backend's re-serialisation
    of the parsed number gives the same bytes.
    """

    def __init__(self, tenths):
        if type(tenths) is not int or tenths < 0:
            raise ValueError("Tenths holds a non-negative int")
        self.tenths = tenths

    def text(self):
        whole, tenth = divmod(self.tenths, 10)
        return str(whole) + "." + str(tenth)

    def __eq__(self, other):
        return isinstance(other, Tenths) and other.tenths == self.tenths

    def __repr__(self):
        return "Tenths(" + str(self.tenths) + ")"


def _quote(text):
    for char in text:
        if char < " " or char == '"' or char == "\\":
            break
    else:
        return '"' + text + '"'
    parts = ['"']
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is None:
            escaped = f"\\u{ord(char):04x}" if char < " " else char
        parts.append(escaped)
    parts.append('"')
    return "".join(parts)


def _encode(value, out):
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, Tenths):
        out.append(value.text())
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError("canonical JSON keys are strings")
        out.append("{")
        first = True
        for key in sorted(value):
            if not first:
                out.append(",")
            first = False
            out.append(_quote(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError("no canonical JSON for " + type(value).__name__)


def canonical_text(value):
    """``value`` as canonical JSON text (keys sorted, no whitespace, non-ASCII
    kept). Raises ``TypeError`` for a float or any other unsupported type."""
    out = []
    _encode(value, out)
    return "".join(out)


def canonical_body(payload):
    """The signed bytes: ``payload`` without ``sig``, canonical, UTF-8. Raises
    ``UnicodeError`` for a lone surrogate (CPython only; MicroPython has none)."""
    body = {}
    for key in payload:
        if key != "sig":
            body[key] = payload[key]
    return canonical_text(body).encode("utf-8")


def _hexlify(raw):
    return binascii.hexlify(raw).decode()


class Signer:
    """HMAC-SHA256 (RFC 2104, 64-byte block) keyed with the UTF-8 bytes of a secret.

    The padded keys are computed once: a simulator signs for many meters.
    """

    def __init__(self, secret):
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key + b"\x00" * (_BLOCK - len(key))
        self._inner_pad = bytes(b ^ 0x36 for b in key)
        self._outer_pad = bytes(b ^ 0x5C for b in key)

    def digest(self, message):
        inner = hashlib.sha256(self._inner_pad)
        inner.update(message)
        outer = hashlib.sha256(self._outer_pad)
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, message):
        return _hexlify(self.digest(message))

    def sign(self, payload):
        """The ``sig`` of ``payload`` (a dict; its own ``sig`` is left out)."""
        return self.hexdigest(canonical_body(payload))

    def signed(self, payload):
        """A copy of ``payload`` with its ``sig`` set."""
        result = dict(payload)
        result["sig"] = self.sign(payload)
        return result

    def valid(self, payload):
        """``payload["sig"]`` is 64 lowercase hex and equals ``sign(payload)``
        (compared in constant time). Never raises for a non-canonical payload."""
        sig = payload.get("sig")
        if not is_sig(sig):
            return False
        try:
            expected = self.sign(payload)
        except (TypeError, ValueError, UnicodeError):
            return False
        return equal_constant_time(expected, sig)


def hmac_sha256(key, message):
    """HMAC-SHA256 of ``message`` (bytes) with ``key`` (bytes or str as UTF-8)."""
    return Signer(key).digest(message)


def is_sig(value):
    """64 lowercase hex digits."""
    if not isinstance(value, str) or len(value) != 64:
        return False
    return all(char in _HEX for char in value)


def equal_constant_time(left, right):
    """String equality whose time does not depend on where they differ."""
    left = left.encode("utf-8")
    right = right.encode("utf-8")
    if len(left) != len(right):
        return False
    diff = 0
    for a, b in zip(left, right):
        diff |= a ^ b
    return diff == 0


def wire(payload):
    """The bytes published for a signed payload: its canonical text (with ``sig``)."""
    return canonical_text(payload).encode("utf-8")
