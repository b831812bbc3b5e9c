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
  average cost left gets a ``low_balance`` warning (its state unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

CONNECT = "connect"
DISCONNECT = "disconnect"

REASON_EXEMPT = "exempt"
REASON_EXHAUSTED = "funds_exhausted"
REASON_FUNDED = "funded"
REASON_LOW = "low_balance"


@dataclass(frozen=True, slots=True)
class SupplyInputs:
    balance_uk: int
    credit_limit_uk: int
    avg_cost_uk: int  # recent average cost of one interval, µk (>= 0)
    current_state: str  # "connect" or "disconnect"
    exempt: bool
    low_intervals: int = 24


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
    """The decision to send, or ``None`` when nothing needs saying."""
    if inputs.current_state not in (CONNECT, DISCONNECT):
        raise ValueError(f"unknown supply state {inputs.current_state!r}")
    if inputs.credit_limit_uk < 0 or inputs.avg_cost_uk < 0 or inputs.low_intervals < 0:
        raise ValueError("credit limit, average cost and low_intervals must not be negative")
    if inputs.exempt:
        return None if inputs.current_state == CONNECT else SupplyDecision(CONNECT, REASON_EXEMPT)
    if inputs.balance_uk <= -inputs.credit_limit_uk:
        return None if inputs.current_state == DISCONNECT else SupplyDecision(DISCONNECT, REASON_EXHAUSTED)
    if inputs.current_state == DISCONNECT:
        if inputs.balance_uk >= reconnect_threshold_uk(inputs.avg_cost_uk):
            return SupplyDecision(CONNECT, REASON_FUNDED)
        return None
    left = intervals_left(inputs.balance_uk, inputs.credit_limit_uk, inputs.avg_cost_uk)
    if left is not None and left < inputs.low_intervals:
        return SupplyDecision(CONNECT, REASON_LOW)
    return None
