"""The stand-in's own pages and controls: the resident's side of Stripe
(paying, finishing onboarding) and the bank's (payouts, disputes)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..client import ProviderDeclined
from ..models import FakeObject
from .store import event_emit, object_create, object_get, object_save

CHECKOUT_OUTCOMES = ("pay", "pay_async", "pay_async_fail", "cancel")


def fake_checkout_session(session_id: str) -> dict[str, Any] | None:
    """The session the "pay" page shows, or ``None``."""
    found = FakeObject.objects.filter(pk=session_id, kind="checkout.session").first()
    return found.data if found else None


@transaction.atomic
def fake_checkout_finish(session_id: str, outcome: str) -> str:
    """The resident pressed a button on the "pay" page: ``pay`` (card),
    ``pay_async`` / ``pay_async_fail`` (a bank debit that succeeds / fails
    later) or ``cancel``. Emits the events Stripe would; returns where the
    resident goes next."""
    if outcome not in CHECKOUT_OUTCOMES:
        raise ProviderDeclined(f"unknown outcome {outcome!r}")
    session = object_get(session_id, "checkout.session", lock=True)
    if session["status"] != "open":
        return session["success_url"]
    if outcome == "cancel":
        session["status"] = "expired"
        object_save(session)
        event_emit("checkout.session.expired", session)
        return session["cancel_url"]
    intent, charge = _payment_make(session, succeeded=outcome != "pay_async_fail")
    session.update(status="complete", payment_intent=intent["id"])
    session["payment_status"] = "paid" if outcome == "pay" else "unpaid"
    object_save(session)
    event_emit("checkout.session.completed", session)
    if outcome == "pay_async":
        session["payment_status"] = "paid"
        object_save(session)
        event_emit("checkout.session.async_payment_succeeded", session)
    if outcome == "pay_async_fail":
        event_emit("checkout.session.async_payment_failed", session)
        event_emit("payment_intent.payment_failed", intent)
    else:
        event_emit("payment_intent.succeeded", intent)
        event_emit("charge.succeeded", charge)
    return session["success_url"]


def _payment_make(session: dict[str, Any], succeeded: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    amount, currency, metadata = session["amount_total"], session["currency"], session["metadata"]
    charge, _ = object_create(
        "charge",
        "ch",
        {
            "amount": amount,
            "amount_refunded": 0,
            "currency": currency,
            "paid": succeeded,
            "refunded": False,
            "disputed": False,
            "status": "succeeded" if succeeded else "failed",
            "metadata": metadata,
        },
    )
    intent, _ = object_create(
        "payment_intent",
        "pi",
        {
            "amount": amount,
            "amount_received": amount if succeeded else 0,
            "currency": currency,
            "status": "succeeded" if succeeded else "requires_payment_method",
            "metadata": metadata,
            "latest_charge": charge["id"],
        },
    )
    charge["payment_intent"] = intent["id"]
    object_save(charge)
    return intent, charge


def fake_onboarding_link(link_id: str) -> dict[str, Any] | None:
    """The account link the "finish onboarding" page shows, or ``None``."""
    found = FakeObject.objects.filter(pk=link_id, kind="account_link").first()
    return found.data if found else None


@transaction.atomic
def fake_onboarding_finish(link_id: str) -> str:
    """The producer "finished onboarding": the account can be paid out
    (``account.updated``). Returns the link's return URL."""
    link = object_get(link_id, "account_link")
    account = object_get(link["account"], "account", lock=True)
    if not account["payouts_enabled"]:
        account.update(details_submitted=True, payouts_enabled=True, charges_enabled=True)
        object_save(account)
        event_emit("account.updated", account, account=account["id"])
    return link["return_url"]


@transaction.atomic
def fake_payout_settle(payout_id: str, outcome: str) -> None:
    """The bank's answer to a pending payout: ``paid`` or ``failed``."""
    row = FakeObject.objects.select_for_update().get(pk=payout_id, kind="payout")
    payout = row.data
    if payout["status"] != "pending":
        return
    payout["status"] = outcome
    if outcome == "failed":
        payout.update(failure_code="account_closed", failure_message="The bank account has been closed.")
    object_save(payout)
    event_emit(f"payout.{outcome}", payout, account=row.group)


@transaction.atomic
def fake_dispute_open(payment_intent_id: str) -> str:
    """The card holder disputes the whole payment (``charge.dispute.created``)."""
    intent = object_get(payment_intent_id, "payment_intent")
    charge = object_get(intent["latest_charge"], "charge", lock=True)
    charge["disputed"] = True
    object_save(charge)
    fields = {
        "amount": charge["amount"],
        "currency": charge["currency"],
        "charge": charge["id"],
        "payment_intent": payment_intent_id,
        "status": "needs_response",
        "reason": "fraudulent",
    }
    dispute, _ = object_create("dispute", "dp", fields)
    event_emit("charge.dispute.created", dispute)
    return dispute["id"]


@transaction.atomic
def fake_dispute_close(dispute_id: str, won: bool) -> None:
    """The bank decided (``charge.dispute.closed`` with ``won`` or ``lost``)."""
    dispute = object_get(dispute_id, "dispute", lock=True)
    dispute["status"] = "won" if won else "lost"
    object_save(dispute)
    event_emit("charge.dispute.closed", dispute)
