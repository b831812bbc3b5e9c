"""Record operator actions (append-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .models import OperatorAction


def operator_action_record(
    actor: str, action: str, target: str, now: datetime, reason: str = "", detail: dict[str, Any] | None = None
) -> OperatorAction:
    """Write one audit row; call it inside the transaction that does the action."""
    if not actor:
        raise ValueError("an operator action needs the operator's name")
    return OperatorAction.objects.create(
        actor=actor, action=action, target=target, reason=reason[:500], detail=detail or {}, at=now
    )
