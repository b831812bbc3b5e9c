"""What the payment services share: errors, event deferral, URLs, ids."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.urls import reverse

from utility.residents.services import ResidentError


class PaymentsError(ResidentError):
    """A clear, user-facing refusal; nothing was written (or it was undone)."""


class EventDeferred(Exception):
    """The event refers to a payment not known yet (its own event has not
    arrived): keep it and replay it when ``key`` becomes known."""

    def __init__(self, key: str) -> None:
        super().__init__(f"waiting for {key}")
        self.key = key


def site_url(name: str, *args: object) -> str:
    """An absolute URL on this site (``SITE_URL``), for Stripe redirects."""
    return settings.SITE_URL + reverse(name, args=args)


def object_id(value: Any) -> str:
    """The id of a Stripe field that may be an id or an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def uuid_or_none(value: Any) -> uuid.UUID | None:
    """``value`` as a UUID, or ``None`` (metadata is untrusted text)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def metadata_of(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}
