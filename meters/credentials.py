"""Meter secrets: issued once, sealed at rest, hashed for the broker.

The secret keys the HMAC-SHA256 of every reading and decision, so the backend
must be able to recover it: it is sealed with AES-GCM under a key derived from
``METER_SECRET_KEY`` (or ``SECRET_KEY``). The broker only ever sees a
Mosquitto ``$7$`` PBKDF2-SHA512 hash of it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

MOSQUITTO_ITERATIONS = 101  # mosquitto_passwd's default for $7$


def secret_generate() -> str:
    """A new meter secret: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def _sealing_material() -> str:
    return settings.METER_SECRET_KEY or settings.SECRET_KEY


@functools.lru_cache(maxsize=4)
def _cipher(material: str) -> AESGCM:
    # Built once per key: the decisions after a settlement unseal 100,000
    # secrets, and deriving the key and a new AESGCM per call was a third of it.
    return AESGCM(hashlib.sha256(b"commonwatt-meter-secrets|" + material.encode()).digest())


def secret_seal(secret: str, associated: str) -> str:
    """Encrypt ``secret``, bound to ``associated`` (the meter id)."""
    nonce = os.urandom(12)
    sealed = _cipher(_sealing_material()).encrypt(nonce, secret.encode(), associated.encode())
    return base64.b64encode(nonce + sealed).decode()


def secret_unseal(sealed: str, associated: str) -> str:
    return secret_unsealer()(sealed, associated)


def secret_unsealer() -> Callable[[str, str], str]:
    """``secret_unseal`` for many meters: the key is looked up once, here,
    not per meter (reading the settings and the cipher cache was a third of
    unsealing 90,000 secrets). Take a new one per batch: it does not see a
    later change of ``METER_SECRET_KEY``."""
    decrypt = _cipher(_sealing_material()).decrypt
    b64decode = base64.b64decode

    def unseal(sealed: str, associated: str) -> str:
        raw = b64decode(sealed)
        return decrypt(raw[:12], raw[12:], associated.encode()).decode()

    return unseal


def mosquitto_hash(secret: str, salt: bytes | None = None) -> str:
    """The ``$7$`` line Mosquitto 2 reads from its password file."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, MOSQUITTO_ITERATIONS, 64)
    return f"$7${MOSQUITTO_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def mosquitto_hash_matches(secret: str, hashed: str) -> bool:
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
    except ValueError:
        return False
    if kind != "7":
        return False
    computed = hashlib.pbkdf2_hmac("sha512", secret.encode(), base64.b64decode(salt), int(iterations), 64)
    return hmac.compare_digest(computed, base64.b64decode(digest))
