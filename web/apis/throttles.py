"""Tighter rates for moving money and for asking for a token (settings)."""

from __future__ import annotations

from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class MoneyThrottle(UserRateThrottle):
    scope = "money"


class TokenThrottle(AnonRateThrottle):
    """Per address, signed in or not."""

    scope = "token"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
