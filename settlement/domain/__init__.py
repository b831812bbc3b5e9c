"""The settlement engine: pure Python over plain frozen data.

No Django, Celery, Stripe, web3 or paho imports, no clock, no settings.
"""

from .engine import (
    ALERT_IMPORT_EXCEEDS_EXPORT,
    ALERT_LOSS_HIGH,
    ALERT_NO_EXPORT,
    GridRules,
    IntervalSettlement,
    MeterUsage,
    SettlementLine,
    settle_interval,
)

__all__ = [
    "ALERT_IMPORT_EXCEEDS_EXPORT",
    "ALERT_LOSS_HIGH",
    "ALERT_NO_EXPORT",
    "GridRules",
    "IntervalSettlement",
    "MeterUsage",
    "SettlementLine",
    "settle_interval",
]
