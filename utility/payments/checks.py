"""Configuration checks (``manage.py check``, runserver, migrate): the stand-in
is refused with a live key, and Stripe needs its keys (also refused at the
client's first use, for servers that skip checks)."""

from __future__ import annotations

from django.core import checks

from .client import payments_config_problems


@checks.register(checks.Tags.security)
def payments_settings_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    return [checks.Error(problem, id="payments.E001") for problem in payments_config_problems()]
