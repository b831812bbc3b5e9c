"""Canonical JSON and HMAC-SHA256 equal CPython's json.dumps(...) and hmac, byte for byte."""

import hashlib
import hmac
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.signing import Signer, Tenths, canonical_body, canonical_text, equal_constant_time, hmac_sha256, wire


def reference(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=25,
)
small_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


@given(json_values)
def test_canonical_text_is_cpython_json_dumps(value):
    assert canonical_text(value).encode() == reference(value)


@given(st.dictionaries(st.text(max_size=8) | st.just("sig"), small_values, max_size=6), st.text(min_size=1))
def test_canonical_body_leaves_out_sig_only(body, sig):
    with_sig = dict(body, sig=sig)
    expected = reference({key: value for key, value in body.items() if key != "sig"})
    assert canonical_body(with_sig) == expected


@given(st.text(st.characters(codec=None, categories=["Cc", "Zl", "Zp", "Cf", "Co"]) | st.sampled_from('"\\/\x7f')))
def test_control_and_separator_characters_escape_like_cpython(text):
    assert canonical_text({"k": text}).encode() == reference({"k": text})


def test_lone_surrogate_has_no_utf8_form_in_either():
    with pytest.raises(UnicodeError):
        reference({"k": "\ud800"})
    with pytest.raises(UnicodeError):
        canonical_body({"k": "\ud800"})


@given(st.integers(0, 10**7))
def test_tenths_serialise_as_the_float_cpython_reparses(tenths):
    # The backend parses "228.4" as a float and signs json.dumps of it: the
    # firmware's text must be exactly that float's repr.
    text = canonical_text({"v_min": Tenths(tenths)})
    parsed = json.loads(text)
    assert reference(parsed).decode() == text
    assert int(Decimal(repr(parsed["v_min"])) * 10) == tenths


def test_floats_and_non_string_keys_are_refused():
    with pytest.raises(TypeError):
        canonical_text({"v": 229.3})
    with pytest.raises(TypeError):
        canonical_text({1: "a"})
    with pytest.raises(ValueError):
        Tenths(-1)


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_hmac_is_rfc2104_as_cpython_hmac(key, message):
    assert hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()


@given(st.text(max_size=120), st.dictionaries(st.text(max_size=10), small_values, max_size=5))
def test_sign_is_hmac_of_reference_bytes_keyed_with_utf8_secret(secret, body):
    expected = hmac.new(secret.encode(), reference(body), hashlib.sha256).hexdigest()
    assert Signer(secret).sign(body) == expected
    assert Signer(secret).valid(dict(body, sig=expected))


@given(st.dictionaries(st.text(max_size=10), st.integers(), min_size=1, max_size=6), st.data())
def test_any_change_breaks_the_signature(body, data):
    signer = Signer("k")
    signed = signer.signed(body)
    key = data.draw(st.sampled_from(sorted(body)))
    tampered = dict(signed, **{key: body[key] + 1})
    assert signer.valid(signed)
    assert not signer.valid(tampered)
    assert not Signer("other").valid(signed)
    assert not signer.valid(dict(signed, sig=signed["sig"].upper()))
    assert not signer.valid(body)


def test_wire_is_canonical_with_sig():
    signed = Signer("k").signed({"b": 1, "a": "ü"})
    assert wire(signed) == reference(signed)


def test_equal_constant_time():
    assert equal_constant_time("abc", "abc")
    assert not equal_constant_time("abc", "abd")
    assert not equal_constant_time("abc", "ab")
