"""Prepaid supply decisions: pure rules over plain numbers (no Django, no clock).

Units: money in integer µk, energy in Wh, time in intervals. The rules
(SPEC.md "Prepaid meters and decisions", issue 4):

* exempt meters (pure producers, and meters the operator marked "never
  disconnect", e.g. a clinic or a street light) are always ``connect``;
* a meter is *past its limit* when its balance is at or below
  ``-credit_limit_uk`` (with no credit allowed: at or below zero). It is
  ``disconnect``-ed once it has been past the limit for the grid's credit
  grace (``credit_grace_s``; 0, the default: at once). During the grace it
  keeps supply and is warned once (``connect``, reason ``credit_grace``); the
  grace runs from when it was first seen past the limit
  (``overdrawn_since_next``: the caller keeps that instant per meter and
  passes the seconds elapsed since) and starts afresh once it is back above;
* a disconnected meter is reconnected only once its balance covers the
  reconnect threshold — one interval at its recent average cost, at least 1 µk —
  so a meter does not flap on and off around zero;
* a connected meter with fewer than ``low_intervals`` intervals of its recent
  average cost left gets a ``low_balance`` warning (its state unchanged) once:
  not again while the warning stands, and a warned meter whose balance climbs
  back above the low mark is told ``balance_restored`` (so it can clear its
  warning light, and a later low spell warns again);
* a meter an operator forced on or off (``held``) is left alone until the
  operator releases it;
* a meter the market cut for a missed contract payment (``market_cut``) stays
  cut, whatever its balance, until it is funded (``funded``: this decision
  follows a funding of the meter) and covers the reconnect threshold: the
  stricter cut stands until its cause is cleared. (The other way round, the
  market leaves a meter the rules cut for exhausted funds alone:
  ``meters.supply.meter_is_held``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

CONNECT = "connect"
DISCONNECT = "disconnect"

REASON_EXEMPT = "exempt"
REASON_EXHAUSTED = "funds_exhausted"
REASON_GRACE = "credit_grace"  # past the credit limit, cut when the grace ends
# ``marketplace`` cuts a contract buyer's meter with this reason when a
# payment is missed (``marketplace.services.delivery.REASON_PAYMENT_MISSED``).
REASON_PAYMENT_MISSED = "contract_payment_missed"
REASON_FUNDED = "funded"
REASON_LOW = "low_balance"
REASON_RESTORED = "balance_restored"
# An operator forced the state (``meters.supply.meter_force_state``); the
# automatic rules leave the meter alone until ``meter_release``.
REASON_OPERATOR = "operator"
REASON_RELEASED = "released"


class SupplyInputs(NamedTuple):
    """What the rules look at (a tuple: a settlement builds 100,000 of them)."""

    balance_uk: int
    credit_limit_uk: int
    avg_cost_uk: int  # recent average cost of one interval, µk (>= 0)
    current_state: str  # "connect" or "disconnect"
    exempt: bool
    low_intervals: int = 24
    warned: bool = False  # the last decision sent was a low-balance warning
    held: bool = False  # an operator forced the state and has not released it
    credit_grace_s: int = 0  # how long it may stay past the limit before the cut
    overdrawn_s: int | None = None  # seconds since first seen past the limit; None: not seen
    grace_warned: bool = False  # the last decision sent was a credit-grace warning
    market_cut: bool = False  # the last decision sent was the market's missed-payment cut
    funded: bool = False  # this decision follows a funding of the meter


@dataclass(frozen=True, slots=True)
class SupplyDecision:
    state: str
    reason: str

    @property
    def is_warning(self) -> bool:
        return self.reason in (REASON_LOW, REASON_GRACE)


def reconnect_threshold_uk(avg_cost_uk: int) -> int:
    """Balance a disconnected meter needs to be switched back on (µk)."""
    return max(1, avg_cost_uk)


def intervals_left(balance_uk: int, credit_limit_uk: int, avg_cost_uk: int) -> int | None:
    """Whole intervals the balance (plus credit) lasts at the average cost;
    ``None`` when the meter uses nothing (it never runs out)."""
    if avg_cost_uk <= 0:
        return None
    return max(0, (balance_uk + credit_limit_uk) // avg_cost_uk)


def past_limit(balance_uk: int, credit_limit_uk: int) -> bool:
    """True when the balance is at or below the credit limit (µk)."""
    return balance_uk <= -credit_limit_uk


def overdrawn_since_next(
    balance_uk: int, credit_limit_uk: int, overdrawn_since: datetime | None, now: datetime
) -> datetime | None:
    """The instant to keep as "past the limit since": ``now`` when first seen
    past it, unchanged while it stays past, ``None`` once it is back above."""
    if not past_limit(balance_uk, credit_limit_uk):
        return None
    return now if overdrawn_since is None else overdrawn_since


def average_needed(inputs: SupplyInputs) -> bool:
    """False when ``supply_decide`` gives the same answer whatever
    ``avg_cost_uk`` is (held, exempt, past the limit, or cut with nothing to
    reconnect with), so a caller may skip computing the recent average."""
    if inputs.held or inputs.exempt or past_limit(inputs.balance_uk, inputs.credit_limit_uk):
        return False
    if inputs.current_state == DISCONNECT:
        # The threshold is at least 1 µk; a market cut waits for a funding.
        return inputs.balance_uk >= 1 and (inputs.funded or not inputs.market_cut)
    return True


def supply_decide(inputs: SupplyInputs) -> SupplyDecision | None:
    """The decision to send, or ``None`` when nothing needs saying.

    Safe to evaluate any number of times: a meter already in the state the
    rules want, or already warned, gets ``None``. Raises ``ValueError`` for an
    unknown state or a negative limit, cost, grace, elapsed time or ``low_intervals``.
    """
    if inputs.current_state not in (CONNECT, DISCONNECT):
        raise ValueError(f"unknown supply state {inputs.current_state!r}")
    if min(inputs.credit_limit_uk, inputs.avg_cost_uk, inputs.low_intervals, inputs.credit_grace_s) < 0:
        raise ValueError("credit limit, average cost, grace and low_intervals must not be negative")
    if inputs.overdrawn_s is not None and inputs.overdrawn_s < 0:
        raise ValueError("overdrawn_s must not be negative")
    if inputs.held:
        return None
    if inputs.exempt:
        return None if inputs.current_state == CONNECT else SupplyDecision(CONNECT, REASON_EXEMPT)
    past = past_limit(inputs.balance_uk, inputs.credit_limit_uk)
    if inputs.current_state == DISCONNECT:
        if inputs.market_cut and not inputs.funded:
            return None
        if not past and inputs.balance_uk >= reconnect_threshold_uk(inputs.avg_cost_uk):
            return SupplyDecision(CONNECT, REASON_FUNDED)
        return None
    if past:
        # First seen past the limit now: its grace starts now.
        if (inputs.overdrawn_s or 0) >= inputs.credit_grace_s:
            return SupplyDecision(DISCONNECT, REASON_EXHAUSTED)
        return None if inputs.grace_warned else SupplyDecision(CONNECT, REASON_GRACE)
    left = intervals_left(inputs.balance_uk, inputs.credit_limit_uk, inputs.avg_cost_uk)
    low = left is not None and left < inputs.low_intervals
    if inputs.grace_warned:  # back above the limit: replace the grace warning
        return SupplyDecision(CONNECT, REASON_LOW if low else REASON_RESTORED)
    if low and not inputs.warned:
        return SupplyDecision(CONNECT, REASON_LOW)
    if not low and inputs.warned:
        return SupplyDecision(CONNECT, REASON_RESTORED)
    return None
