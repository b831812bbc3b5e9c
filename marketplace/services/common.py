"""What every market service checks: who may trade with which meter, sane
integers, delivery windows on the grid's interval boundaries, escrow accounts.

Every refusal is a ``MarketError`` (a ``ResidentError``: clear, user-facing,
and nothing was written).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from meters.decisions import decision_publish
from meters.models import Grid, Meter, MeterKind
from meters.supply import meter_is_held
from utility.ledger.models import Account, AccountKind
from utility.ledger.services import account_ensure
from utility.lib.timeutil import ensure_utc, format_utc, is_aligned
from utility.payments.selectors import wallet_freeze_reason
from utility.residents.services import ResidentError

# Far above any real trade, low enough that µk products stay inside 64 bits.
MAX_ENERGY_WH = 10**9  # 1 GWh
MAX_PRICE_UK_PER_KWH = 10**9  # 1,000 k per kWh
MAX_AMOUNT_UK = 10**15
MAX_WINDOW = timedelta(days=31)
# Dual metering: the seller's metered delivery may fall this far short of the
# buyer's metered receipt (meters disagree a little) before it is a breach.
DEFAULT_TOLERANCE_BP = 500
# 230 V ± 10 % (EN 50160), in decivolts.
DEFAULT_V_MIN_DV = 2070
DEFAULT_V_MAX_DV = 2530
MAX_DV = 10_000

SELLING_KINDS = (MeterKind.PRODUCER, MeterKind.PROSUMER)
BUYING_KINDS = (MeterKind.CONSUMER, MeterKind.PROSUMER)


class MarketError(ResidentError):
    """A refused market action (clear, user-facing); nothing was written."""


def check_int(name: str, value: object, *, minimum: int = 0, maximum: int) -> int:
    """``value`` if it is an integer in ``[minimum, maximum]``; else ``MarketError``."""
    if type(value) is not int:
        raise MarketError(f"{name} must be a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise MarketError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def check_trader(user) -> None:
    """A signed-in, active resident whose wallet is not frozen."""
    if not getattr(user, "is_authenticated", False) or user.pk is None or not user.is_active:
        raise MarketError("only a signed-in resident can trade")
    if frozen := wallet_freeze_reason(user):
        raise MarketError(f"your wallet is frozen: {frozen}")


def meter_for_trade(user, meter: object, *, selling: bool, grid: Grid | None = None) -> Meter:
    """The caller's own active meter, of a kind that can sell (producer,
    prosumer) or buy (consumer, prosumer), on ``grid`` when given."""
    if not isinstance(meter, Meter) or meter.pk is None:
        raise MarketError("choose one of your meters")
    fresh = Meter.objects.filter(pk=meter.pk).first()
    if fresh is None or fresh.owner_id != user.pk:
        raise MarketError(f"meter {meter.public_id} is not yours")
    if not fresh.active:
        raise MarketError(f"meter {fresh.public_id} is not active")
    kinds = SELLING_KINDS if selling else BUYING_KINDS
    if fresh.kind not in kinds:
        role = "sell (producers and prosumers)" if selling else "buy (consumers and prosumers)"
        raise MarketError(f"meter {fresh.public_id} is a {fresh.kind} meter; only some meters can {role}")
    if grid is not None and fresh.grid_id != grid.pk:
        raise MarketError(f"meter {fresh.public_id} is on another grid")
    return fresh


def check_window(grid: Grid, start: object, end: object, now: datetime, *, what: str = "delivery") -> None:
    """``[start, end)`` on the grid's interval boundaries, in the future, not
    yet settled and at most ``MAX_WINDOW`` long."""
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        raise MarketError(f"the {what} start and end must be times")
    if start.tzinfo is None or end.tzinfo is None:
        raise MarketError(f"the {what} times need a time zone (UTC)")
    start, end = ensure_utc(start), ensure_utc(end)
    for moment in (start, end):
        if not is_aligned(moment, grid.interval_s):
            raise MarketError(f"{format_utc(moment)} is not on the grid's {grid.interval_s // 60}-minute boundaries")
    if end <= start:
        raise MarketError(f"the {what} must end after it starts")
    if end - start > MAX_WINDOW:
        raise MarketError(f"the {what} may last at most {MAX_WINDOW.days} days")
    if start < now:
        raise MarketError(f"the {what} must start in the future (after {format_utc(now)})")
    if grid.settled_through is not None and start < grid.settled_through:
        raise MarketError(f"{format_utc(start)} is already settled")


def check_band(v_min_dv: object, v_max_dv: object) -> None:
    check_int("v_min_dv", v_min_dv, minimum=1, maximum=MAX_DV)
    check_int("v_max_dv", v_max_dv, minimum=1, maximum=MAX_DV)
    if v_min_dv >= v_max_dv:  # type: ignore[operator]
        raise MarketError("the voltage band's low end must be below its high end")


def escrow_for(what: str, pk: int) -> Account:
    """The escrow account of an offer or a contract: ``escrow:<what>:<id>``."""
    return account_ensure(f"escrow:{what}:{pk}", AccountKind.MARKET_ESCROW)


def supply_tell(meter: Meter, state: str, reason: str, now: datetime) -> bool:
    """Send ``meter`` a market decision unless an operator holds it (their
    word stands) or it must never be cut; True when one was sent."""
    if meter_is_held(meter) or (state == "disconnect" and meter.never_disconnect):
        return False
    decision_publish(meter, state, reason, now=now)
    return True
