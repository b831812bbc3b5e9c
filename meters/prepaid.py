"""Prepaid supply decisions: pure rules over plain numbers (no Django, no clock).

Units: money in integer µk, energy in Wh, time in intervals. The rules
(SPEC.md "Prepaid meters and decisions", issue 4):

* exempt meters (pure producers, and meters the operator marked "never
  disconnect", e.g. a clinic or a street light) are always ``connect``;
* ``disconnect`` when the balance is at or below ``-credit_limit_uk`` (with no
  credit allowed: at or below zero);
* a disconnected meter is reconnected only once its balance covers the
  reconnect threshold — one interval at its recent average cost, at least 1 µk —
  so a meter does not flap on and off around zero;
* a connected meter with fewer than ``low_intervals`` intervals of its recent
  average cost left gets a ``low_balance`` warning (its state unchanged) once:
  not again while the warning stands, and a warned meter whose balance climbs
  back above the low mark is told ``balance_restored`` (so it can clear its
  warning light, and a later low spell warns again);
* a meter an operator forced on or off (``held``) is left alone until the
  operator releases it.
"""

from __future__ import annotations

from dataclasses import dataclass

CONNECT = "connect"
DISCONNECT = "disconnect"

REASON_EXEMPT = "exempt"
REASON_EXHAUSTED = "funds_exhausted"
REASON_FUNDED = "funded"
REASON_LOW = "low_balance"
REASON_RESTORED = "balance_restored"
# An operator forced the state (``meters.supply.meter_force_state``); the
# automatic rules leave the meter alone until ``meter_release``.
REASON_OPERATOR = "operator"
REASON_RELEASED = "released"


@dataclass(frozen=True, slots=True)
class SupplyInputs:
    balance_uk: int
    credit_limit_uk: int
    avg_cost_uk: int  # recent average cost of one interval, µk (>= 0)
    current_state: str  # "connect" or "disconnect"
    exempt: bool
    low_intervals: int = 24
    warned: bool = False  # the last decision sent was a low-balance warning
    held: bool = False  # an operator forced the state and has not released it


@dataclass(frozen=True, slots=True)
class SupplyDecision:
    state: str
    reason: str

    @property
    def is_warning(self) -> bool:
        return self.reason == REASON_LOW


def reconnect_threshold_uk(avg_cost_uk: int) -> int:
    """Balance a disconnected meter needs to be switched back on (µk)."""
    return max(1, avg_cost_uk)


def intervals_left(balance_uk: int, credit_limit_uk: int, avg_cost_uk: int) -> int | None:
    """Whole intervals the balance (plus credit) lasts at the average cost;
    ``None`` when the meter uses nothing (it never runs out)."""
    if avg_cost_uk <= 0:
        return None
    return max(0, (balance_uk + credit_limit_uk) // avg_cost_uk)


def supply_decide(inputs: SupplyInputs) -> SupplyDecision | None:
    """The decision to send, or ``None`` when nothing needs saying.

    Safe to evaluate any number of times: a meter already in the state the
    rules want, or already warned, gets ``None``. Raises ``ValueError`` for an
    unknown state or a negative limit, cost or ``low_intervals``.
    """
    if inputs.current_state not in (CONNECT, DISCONNECT):
        raise ValueError(f"unknown supply state {inputs.current_state!r}")
    if inputs.credit_limit_uk < 0 or inputs.avg_cost_uk < 0 or inputs.low_intervals < 0:
        raise ValueError("credit limit, average cost and low_intervals must not be negative")
    if inputs.held:
        return None
    if inputs.exempt:
        return None if inputs.current_state == CONNECT else SupplyDecision(CONNECT, REASON_EXEMPT)
    if inputs.balance_uk <= -inputs.credit_limit_uk:
        return None if inputs.current_state == DISCONNECT else SupplyDecision(DISCONNECT, REASON_EXHAUSTED)
    if inputs.current_state == DISCONNECT:
        if inputs.balance_uk >= reconnect_threshold_uk(inputs.avg_cost_uk):
            return SupplyDecision(CONNECT, REASON_FUNDED)
        return None
    left = intervals_left(inputs.balance_uk, inputs.credit_limit_uk, inputs.avg_cost_uk)
    low = left is not None and left < inputs.low_intervals
    if low and not inputs.warned:
        return SupplyDecision(CONNECT, REASON_LOW)
    if not low and inputs.warned:
        return SupplyDecision(CONNECT, REASON_RESTORED)
    return None
