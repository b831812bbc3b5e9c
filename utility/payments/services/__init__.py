"""Writes of the payments app (a package: top-ups, refunds and disputes,
withdrawals, Connect onboarding, the webhook inbox)."""

from .common import EventDeferred, PaymentsError
from .connect import connect_account_refresh, connect_onboarding_url
from .disputes import refund_submit, refunds_reconcile, topup_refund
from .reconcile import payments_reconcile
from .topups import TOPUP_MAX_CENTS, TOPUP_MIN_CENTS, topup_create, topup_quote_for
from .webhooks import HANDLERS, WebhookOutcome, webhook_event_process, webhook_event_receive
from .withdrawals import (
    withdrawal_advance,
    withdrawal_fail,
    withdrawal_quote_for,
    withdrawal_request,
    withdrawal_reverse_transfer,
    withdrawal_settle_paid,
    withdrawals_reconcile,
)

__all__ = [
    "HANDLERS",
    "TOPUP_MAX_CENTS",
    "TOPUP_MIN_CENTS",
    "EventDeferred",
    "PaymentsError",
    "WebhookOutcome",
    "connect_account_refresh",
    "connect_onboarding_url",
    "payments_reconcile",
    "refund_submit",
    "refunds_reconcile",
    "topup_create",
    "topup_quote_for",
    "topup_refund",
    "webhook_event_process",
    "webhook_event_receive",
    "withdrawal_advance",
    "withdrawal_fail",
    "withdrawal_quote_for",
    "withdrawal_request",
    "withdrawal_reverse_transfer",
    "withdrawal_settle_paid",
    "withdrawals_reconcile",
]
