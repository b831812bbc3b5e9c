"""The backend → meter channels: signed supply decisions and the grid price.

A decision tells one meter to ``connect`` or ``disconnect``. It goes out
retained with QoS 1 on ``grid/<grid>/meters/<meter>/decision`` so a meter that
connects later still gets the latest one, carries a per-meter ``seq`` that only
grows (a meter applies a decision only with a higher ``seq`` than the last it
applied, so stale or replayed messages are ignored) and is signed with the
meter's own secret (``meters.protocol.sign``) so a meter obeys only the backend.

Every decision is stored (``MeterDecision``) before it is published, and is
published only after its transaction commits. Publishing holds the meter row
lock, and only the meter's latest decision is ever (re)published, so the
retained message can never go back to an older seq.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from utility.ledger.selectors import account_balance
from utility.lib.timeutil import ensure_utc, format_utc, interval_floor

from .credentials import secret_unseal
from .models import DecisionState, Grid, Meter, MeterDecision
from .mqtt import MqttPublishError, mqtt_publish
from .protocol import sign

logger = logging.getLogger(__name__)

# A reason is a short code a meter can log or show: "low_balance", "funded".
# \Z, not $: "funded\n" must not pass a .match().
REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,59}\Z")


def decision_topic(grid_slug: str, meter_public_id: str) -> str:
    return f"grid/{grid_slug}/meters/{meter_public_id}/decision"


def price_topic(grid_slug: str) -> str:
    return f"grid/{grid_slug}/price"


def _check_decision(meter: Meter, state: str, reason: str, issued_by: str) -> None:
    if state not in DecisionState.values:
        raise ValueError(f"state must be one of {', '.join(DecisionState.values)}, got {state!r}")
    if not isinstance(reason, str) or not REASON_RE.match(reason):
        raise ValueError(f"reason must be a code of a-z, 0-9 and _ (max 60), got {reason!r}")
    if not isinstance(issued_by, str) or not 0 < len(issued_by) <= 150:
        raise ValueError("issued_by must be 'system' or an operator's username (max 150)")
    if not isinstance(meter, Meter) or meter.pk is None:
        raise ValueError(f"not a saved meter: {meter!r}")


def decision_publish(
    meter: Meter, state: str, reason: str, *, issued_by: str = "system", now: datetime | None = None
) -> MeterDecision:
    """Decide ``state`` ("connect"/"disconnect") for ``meter`` and publish it.

    In one transaction: lock the meter, take the next ``decision_seq``, read the
    meter account's balance (µk), sign ``{"state", "reason", "balance_uk",
    "issued_at", "seq"}`` with the meter's secret, store a ``MeterDecision`` and
    set the meter's ``supply_state``. After commit it is published retained,
    QoS 1 (see ``decision_send``; a broker outage leaves it ``published=False``
    for ``decisions_send_pending``). Bad input, or a disconnect for a meter
    marked ``never_disconnect``, raises ``ValueError`` and writes nothing.
    """
    _check_decision(meter, state, reason, issued_by)
    issued_at = ensure_utc(now or timezone.now()).replace(microsecond=0)
    with transaction.atomic():
        locked = Meter.objects.select_for_update().select_related("grid").get(pk=meter.pk)
        if state == DecisionState.DISCONNECT and locked.never_disconnect:
            raise ValueError(f"meter {locked.public_id} is marked never_disconnect")
        seq = locked.decision_seq + 1
        body: dict[str, Any] = {
            "state": state,
            "reason": reason,
            "balance_uk": account_balance(locked.account_id),
            "issued_at": format_utc(issued_at),
            "seq": seq,
        }
        body["sig"] = sign(secret_unseal(locked.secret_sealed, locked.public_id), body)
        decision = MeterDecision.objects.create(
            meter=locked,
            seq=seq,
            state=state,
            reason=reason,
            balance_uk=body["balance_uk"],
            issued_at=issued_at,
            issued_by=issued_by,
            payload=body,
        )
        Meter.objects.filter(pk=locked.pk).update(decision_seq=seq, supply_state=state, decision_reason=reason)
        # robust: inside a caller's larger transaction one meter's broker
        # error must not stop the other meters' decisions from going out.
        transaction.on_commit(partial(_send_logged, decision.pk), robust=True)
    meter.decision_seq, meter.supply_state, meter.decision_reason = seq, state, reason
    return decision


def _send_logged(decision_id: int) -> None:
    try:
        decision_send(decision_id)
    except MqttPublishError:
        logger.exception("decision %s not published; decisions_send_pending will retry", decision_id)


def decision_send(decision_id: int) -> bool:
    """Publish a stored decision retained with QoS 1 and mark it published.

    Holds the meter row lock while publishing so two decisions for one meter
    reach the broker in seq order. Returns ``False`` (and sends nothing) when a
    newer decision exists or it was already published; raises
    ``MqttPublishError`` when the broker does not confirm it.
    """
    with transaction.atomic():
        decision = MeterDecision.objects.select_related("meter__grid").get(pk=decision_id)
        meter = Meter.objects.select_for_update().get(pk=decision.meter_id)
        if decision.published or decision.seq != meter.decision_seq:
            return False
        mqtt_publish(
            decision_topic(decision.meter.grid.slug, decision.meter.public_id), decision.payload, qos=1, retain=True
        )
        MeterDecision.objects.filter(pk=decision.pk).update(published=True)
    return True


def decisions_send_pending(limit: int = 1000) -> int:
    """Publish each meter's latest decision that is not yet published (after
    a broker outage). Older unpublished ones stay unpublished: they are
    superseded. Returns how many went out; stops at the first broker error."""
    pending = (
        MeterDecision.objects.filter(published=False, seq=F("meter__decision_seq"))
        .order_by("issued_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(decision_send(decision_id) for decision_id in list(pending))


def price_publish(grid: Grid, now: datetime) -> dict[str, Any]:
    """Publish ``grid``'s current tariff retained with QoS 1 on ``grid/<slug>/price``.

    Payload: ``{"grid", "tariff_uk_per_kwh" (µk per kWh), "interval_s",
    "interval_start" (the interval containing ``now``), "issued_at"}``. It is
    not signed: it informs smart loads, it commands nothing. Returns the payload.
    """
    if not isinstance(grid, Grid) or grid.pk is None:
        raise ValueError(f"not a saved grid: {grid!r}")
    now = ensure_utc(now)
    fresh = Grid.objects.only("slug", "tariff_uk_per_kwh", "interval_s").get(pk=grid.pk)
    payload = {
        "grid": fresh.slug,
        "tariff_uk_per_kwh": fresh.tariff_uk_per_kwh,
        "interval_s": fresh.interval_s,
        "interval_start": format_utc(interval_floor(now, fresh.interval_s)),
        "issued_at": format_utc(now),
    }
    mqtt_publish(price_topic(fresh.slug), payload, qos=1, retain=True)
    return payload
