"""Buying coins: a Checkout Session per top-up, coins credited only from the
webhook, once per PaymentIntent.

The ledger for a top-up is a function of its facts — paid or not, the largest
refunded amount Stripe reported, the operator's refunds, the disputes and their
outcome — so events applied in any order end in the same balances:
``topup_ledger_sync`` posts the difference between what the facts call for and
what was posted. Coins: ``fiat_issued → wallet``; take-backs the other way.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from utility.ledger.models import AccountKind
from utility.ledger.services import system_account, transaction_post, wallet_ensure
from utility.lib.money import format_uk

from ..client import ProviderError, payments_client
from ..models import DisputeStatus, RefundStatus, TopUp, TopUpStatus
from ..pricing import CoinPrice, TopUpQuote, coins_for_cents, topup_quote
from ..selectors import coin_price_for
from .common import EventDeferred, PaymentsError, metadata_of, object_id, site_url, uuid_or_none

logger = logging.getLogger(__name__)

# Stripe's smallest USD charge is 50 cents; the largest here is an operator's choice.
TOPUP_MIN_CENTS = 100
TOPUP_MAX_CENTS = 1_000_000


def topup_price(user) -> CoinPrice:
    """The price a top-up by ``user`` is quoted at, or a clear refusal."""
    price = coin_price_for(user)
    if price is None:
        raise PaymentsError("you are not on a grid yet, so there is no coin price to buy at")
    return price


def topup_quote_for(user, amount_cents: int) -> TopUpQuote:
    """The coins ``amount_cents`` buys for ``user`` (rounded down, shown before paying)."""
    if type(amount_cents) is not int or not TOPUP_MIN_CENTS <= amount_cents <= TOPUP_MAX_CENTS:
        raise PaymentsError(f"a top-up is between {TOPUP_MIN_CENTS} and {TOPUP_MAX_CENTS} cents, got {amount_cents!r}")
    return topup_quote(amount_cents, topup_price(user))


def topup_create(user, amount_cents: int, now: datetime, expected_coins_uk: int | None = None) -> TopUp:
    """Start buying coins: a top-up row, then a Checkout Session for it.

    ``expected_coins_uk`` is what the resident was shown; if the grid's price
    changed since, nothing is created and they are asked to look again. The
    session's idempotency key is derived from the top-up id; nothing is
    credited here — only the payment's webhook credits.
    """
    quote = topup_quote_for(user, amount_cents)
    if expected_coins_uk is not None and expected_coins_uk != quote.coins_uk:
        raise PaymentsError("the coin price changed since you looked; please check the new amount of coins")
    price = quote.price
    topup = TopUp.objects.create(
        user=user,
        grid_slug=price.grid_slug,
        amount_cents=amount_cents,
        currency=price.currency,
        coin_price_cents=price.coin_price_cents,
        coins_uk=quote.coins_uk,
        created_at=now,
    )
    metadata = {"topup_id": str(topup.id), "user_id": str(user.pk), "grid": price.grid_slug}
    try:
        session = payments_client().checkout_session_create(
            amount_cents=amount_cents,
            currency=price.currency,
            product_name=f"{format_uk(quote.coins_uk)} coins on {price.grid_slug}",
            metadata=metadata,
            success_url=site_url("payments:topup", topup.id),
            cancel_url=site_url("payments:topup", topup.id),
            idempotency_key=f"checkout:{topup.id}",
        )
    except ProviderError as exc:
        TopUp.objects.filter(pk=topup.pk).update(status=TopUpStatus.FAILED, failure_reason=str(exc)[:200])
        raise PaymentsError("the payment page could not be opened; please try again in a minute") from exc
    TopUp.objects.filter(pk=topup.pk).update(checkout_session_id=session.id, checkout_url=session.url)
    topup.checkout_session_id, topup.checkout_url = session.id, session.url
    return topup


def _locked(**lookup: Any) -> TopUp | None:
    return TopUp.objects.select_for_update().filter(**lookup).first()


def topup_for_object(obj: dict[str, Any]) -> TopUp | None:
    """The (locked) top-up a session or payment intent belongs to, by our
    metadata first, then by the ids Stripe gave us."""
    topup_id = uuid_or_none(metadata_of(obj).get("topup_id") or obj.get("client_reference_id"))
    topup = _locked(pk=topup_id) if topup_id else None
    if topup is None and obj.get("object") == "checkout.session":
        topup = _locked(checkout_session_id=obj.get("id"))
    if topup is None and obj.get("object") == "payment_intent":
        topup = _locked(payment_intent_id=obj.get("id"))
    return topup


def topup_for_charge(payment_intent_id: str, charge_id: str, obj: dict[str, Any]) -> TopUp:
    """The (locked) top-up a charge or dispute is about; ``EventDeferred`` when
    its payment is not known yet (its own event has not been processed)."""
    topup = _locked(payment_intent_id=payment_intent_id) if payment_intent_id else None
    if topup is None and charge_id:
        topup = _locked(charge_id=charge_id)
    if topup is None:
        topup_id = uuid_or_none(metadata_of(obj).get("topup_id"))
        topup = _locked(pk=topup_id) if topup_id else None
    if topup is None:
        raise EventDeferred(payment_intent_id or charge_id)
    return topup


def topup_link(topup: TopUp, payment_intent_id: str, charge_id: str = "") -> list[str]:
    """Record the payment's ids on the top-up; returns the ids newly known,
    whose waiting events the inbox replays."""
    linked, fields = [], []
    if payment_intent_id and not topup.payment_intent_id:
        topup.payment_intent_id = payment_intent_id
        linked.append(payment_intent_id)
        fields.append("payment_intent_id")
    elif payment_intent_id and payment_intent_id != topup.payment_intent_id:
        logger.error(
            "top-up %s: payment intent %s, but %s is linked", topup.pk, payment_intent_id, topup.payment_intent_id
        )
    if charge_id and not topup.charge_id:
        topup.charge_id = charge_id
        linked.append(charge_id)
        fields.append("charge_id")
    if fields:
        topup.save(update_fields=fields)
    return linked


def topup_mark_paid(topup: TopUp, amount_cents: int, currency: str, now: datetime) -> None:
    """The payment succeeded: status forward to paid, then the credit (once,
    keyed on the PaymentIntent). A paid amount that differs from the quote is
    credited at the quoted price, rounded down, and logged."""
    if topup.status == TopUpStatus.PAID:
        return
    if (amount_cents, currency.lower()) != (topup.amount_cents, topup.currency):
        logger.error(
            "top-up %s paid %s %s, quoted %s %s", topup.pk, amount_cents, currency, topup.amount_cents, topup.currency
        )
        if currency.lower() == topup.currency:
            topup.amount_cents = amount_cents
            topup.coins_uk = coins_for_cents(amount_cents, topup.coin_price_cents)
    topup.status, topup.paid_at, topup.failure_reason = TopUpStatus.PAID, now, ""
    topup.save(update_fields=["status", "paid_at", "failure_reason", "amount_cents", "coins_uk"])
    topup_ledger_sync(topup)


def topup_mark_failed(topup: TopUp, reason: str) -> None:
    """Failed or expired, unless a later state (paid) is already recorded."""
    if TopUp.RANK[topup.status] >= TopUp.RANK[TopUpStatus.FAILED]:
        return
    topup.status, topup.failure_reason = TopUpStatus.FAILED, reason[:200]
    topup.save(update_fields=["status", "failure_reason"])


def _taken_back_target_uk(topup: TopUp) -> int:
    """µk the top-up's refunds and unresolved or lost disputes take back."""
    refunded_cents = max(
        [topup.refunded_cents] + [r.amount_cents for r in topup.refunds.all() if r.status != RefundStatus.FAILED]
    )
    disputed_cents = sum(d.amount_cents for d in topup.disputes.all() if d.status != DisputeStatus.WON)
    cents = min(topup.amount_cents, refunded_cents + disputed_cents)
    return min(topup.credited_uk, coins_for_cents(cents, topup.coin_price_cents))


def topup_ledger_sync(topup: TopUp, wallet_floor_uk: int | None = None) -> None:
    """Post what the top-up's facts call for and the ledger lacks.

    Call with the top-up row locked. The credit is keyed on the PaymentIntent
    (``topup_credit:<pi>``); each later correction is a new transaction
    ``topup_adjust:<top-up>:<n>``. ``wallet_floor_uk`` guards a take-back (an
    operator refund of coins already spent); webhook take-backs have no floor:
    the money is gone, so the wallet may go below zero (and is frozen).
    """
    wallet = wallet_ensure(topup.user)
    issued = system_account(AccountKind.FIAT_ISSUED)
    if topup.status == TopUpStatus.PAID and topup.credited_uk == 0 and topup.coins_uk > 0:
        coins = topup.coins_uk
        transaction_post(
            f"topup_credit:{topup.payment_intent_id or topup.checkout_session_id}",
            "topup_credit",
            [(issued.pk, -coins), (wallet.pk, coins)],
            memo=f"top-up {topup.pk}: {topup.amount_cents} {topup.currency} at {topup.coin_price_cents}/coin",
        )
        topup.credited_uk = coins
    delta = _taken_back_target_uk(topup) - topup.taken_back_uk
    if delta:
        topup.adjustments += 1
        floors = {wallet.pk: wallet_floor_uk} if wallet_floor_uk is not None and delta > 0 else None
        transaction_post(
            f"topup_adjust:{topup.pk}:{topup.adjustments}",
            "topup_take_back" if delta > 0 else "topup_give_back",
            [(wallet.pk, -delta), (issued.pk, delta)],
            memo=f"top-up {topup.pk}: refunds and disputes",
            floors_uk=floors,
        )
        topup.taken_back_uk += delta
    topup.save(update_fields=["credited_uk", "taken_back_uk", "adjustments"])


# Webhook handlers: (the event's object, the event, now) -> ids newly linked.


def on_session_completed(session: dict[str, Any], event: dict[str, Any], now: datetime) -> list[str]:
    """``checkout.session.completed`` (and ``async_payment_succeeded``): credit
    when ``payment_status == "paid"``; an unpaid (async) session only links."""
    topup = topup_for_object(session)
    if topup is None:
        return []
    linked = topup_link(topup, object_id(session.get("payment_intent")))
    if session.get("payment_status") == "paid":
        topup_mark_paid(topup, int(session.get("amount_total") or 0), str(session.get("currency") or ""), now)
    return linked


def on_session_failed(session: dict[str, Any], event: dict[str, Any], now: datetime) -> list[str]:
    """``async_payment_failed`` and ``expired``: the top-up failed (unless paid)."""
    topup = topup_for_object(session)
    if topup is None:
        return []
    linked = topup_link(topup, object_id(session.get("payment_intent")))
    reason = "checkout expired" if event["type"].endswith("expired") else "the payment failed"
    topup_mark_failed(topup, reason)
    return linked


def on_payment_intent_succeeded(intent: dict[str, Any], event: dict[str, Any], now: datetime) -> list[str]:
    """``payment_intent.succeeded``: the same payment as the session's, credited once."""
    topup = topup_for_object(intent)
    if topup is None:
        return []
    linked = topup_link(topup, str(intent.get("id") or ""), object_id(intent.get("latest_charge")))
    amount = int(intent.get("amount_received") or intent.get("amount") or 0)
    topup_mark_paid(topup, amount, str(intent.get("currency") or ""), now)
    return linked


def on_charge_refunded(charge: dict[str, Any], event: dict[str, Any], now: datetime) -> list[str]:
    """``charge.refunded`` (operator's or the dashboard's): take back the coins
    for the largest amount refunded so far (cumulative, so order does not matter)."""
    payment_intent_id = object_id(charge.get("payment_intent"))
    topup = topup_for_charge(payment_intent_id, str(charge.get("id") or ""), charge)
    linked = topup_link(topup, payment_intent_id, str(charge.get("id") or ""))
    refunded = int(charge.get("amount_refunded") or 0)
    if refunded > topup.refunded_cents:
        topup.refunded_cents = refunded
        topup.save(update_fields=["refunded_cents"])
    topup_ledger_sync(topup)
    return linked
