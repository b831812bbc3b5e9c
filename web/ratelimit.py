"""Login rate limiting: a small cache-based limiter.

Failures are counted per (username, address) and per address in the cache,
each in a fixed window of ``LOGIN_LOCKOUT_S``; at the limit further attempts
are refused before the password is even checked (so a locked account cannot
be probed), until the window ends. A success clears the username's count.
Every login path goes through it: the sign-in page and the admin's (their
forms), and the API's token endpoint and anything else that calls
``authenticate`` (``RateLimitedBackend``).
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest


class LoginLocked(PermissionDenied):
    def __init__(self, retry_after_s: int) -> None:
        minutes = max(1, -(-retry_after_s // 60))
        super().__init__(f"Too many failed log-ins. Try again in {minutes} minute{'s' * (minutes != 1)}.")
        self.retry_after_s = retry_after_s


def client_address(request: HttpRequest | None) -> str:
    """The peer address (behind a proxy, configure it to set REMOTE_ADDR)."""
    if request is None:
        return "-"
    return request.META.get("REMOTE_ADDR") or "-"


def _keys(username: str, address: str) -> tuple[str, str]:
    # Hashed: usernames are user input and cache keys have a restricted alphabet.
    user_digest = hashlib.sha256(f"{username.lower()}|{address}".encode()).hexdigest()
    address_digest = hashlib.sha256(address.encode()).hexdigest()
    return f"login-fail:u:{user_digest}", f"login-fail:a:{address_digest}"


def login_check(username: str, address: str) -> None:
    """Raise ``LoginLocked`` while ``username`` from ``address`` (or the address
    as a whole) is past its failure limit."""
    user_key, address_key = _keys(username or "", address)
    counts = cache.get_many([user_key, address_key])
    if (
        counts.get(user_key, 0) >= settings.LOGIN_FAILURES_MAX
        or counts.get(address_key, 0) >= settings.LOGIN_FAILURES_PER_ADDRESS_MAX
    ):
        raise LoginLocked(settings.LOGIN_LOCKOUT_S)


def login_failure_record(username: str, address: str) -> None:
    for key in _keys(username or "", address):
        # add() starts the window; incr() never extends it.
        if not cache.add(key, 1, timeout=settings.LOGIN_LOCKOUT_S):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=settings.LOGIN_LOCKOUT_S)


def login_success_record(username: str, address: str) -> None:
    cache.delete(_keys(username or "", address)[0])


class RateLimitedBackend(ModelBackend):
    """``ModelBackend`` that refuses to check a password while locked out."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(self._username_field())
        login_check(username or "", client_address(request))
        return super().authenticate(request, username=username, password=password, **kwargs)

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD


@receiver(user_login_failed, dispatch_uid="web.ratelimit.failed")
def _on_login_failed(sender, credentials, request=None, **kwargs) -> None:
    login_failure_record(str(credentials.get("username", "")), client_address(request))


@receiver(user_logged_in, dispatch_uid="web.ratelimit.succeeded")
def _on_logged_in(sender, request, user, **kwargs) -> None:
    login_success_record(user.get_username(), client_address(request))
