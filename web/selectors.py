"""Reads that belong to the web itself (everything else is read through the
apps' selectors and reports)."""

from __future__ import annotations

from rest_framework.authtoken.models import Token

from demo.clock import demo_clock


def api_token_for(user) -> Token | None:
    """The resident's API token, if one was issued."""
    return Token.objects.filter(user=user).first()


def demo_clock_running() -> bool:
    """True in the demo, whose clock the grid page's button moves."""
    return demo_clock() is not None
