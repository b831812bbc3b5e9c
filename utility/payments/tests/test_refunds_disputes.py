"""Operator refunds (coins first, then the money) and disputes (coins held
back and the wallet frozen until the bank decides)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from utility.audit.models import OperatorAction
from utility.ledger.models import AccountKind
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.services import system_account, transaction_post, wallet_ensure
from utility.payments import fake
from utility.payments.client import ProviderUnavailable, payments_client_install
from utility.payments.fake import FakeClient
from utility.payments.models import Dispute, DisputeStatus, FakeObject, Refund, RefundStatus, TopUp
from utility.payments.selectors import wallet_freeze_reason, wallet_is_frozen
from utility.payments.services import PaymentsError, refunds_reconcile, topup_refund, withdrawal_request

from .conftest import NOW, buy, credit, onboard

pytestmark = pytest.mark.django_db

COINS = 3_333_333  # 10.00 at 3.00 a coin


def wallet_uk(user) -> int:
    return account_balance(wallet_ensure(user).pk)


def spend(user, amount_uk: int) -> None:
    """Coins leave the wallet (as funding a meter would)."""
    shop = system_account(AccountKind.OPERATOR_CREDIT)
    transaction_post(f"spend:{user.pk}", "test_spend", [(wallet_ensure(user).pk, -amount_uk), (shop.pk, amount_uk)])


@pytest.fixture
def paid(make_resident, django_capture_on_commit_callbacks) -> TopUp:
    topup = buy(make_resident(), 1_000, django_capture_on_commit_callbacks)
    assert wallet_uk(topup.user) == COINS
    return topup


def test_a_refund_takes_the_coins_back_then_refunds_the_payment(paid, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        refund = topup_refund(paid.pk, "olga", "resident moved away", NOW)

    refund.refresh_from_db()
    paid.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED and refund.stripe_refund_id.startswith("re_")
    assert wallet_uk(paid.user) == 0
    assert (paid.taken_back_uk, paid.refunded_cents) == (COINS, 1_000)  # charge.refunded arrived too
    charge = FakeObject.objects.get(kind="charge", data__payment_intent=paid.payment_intent_id)
    assert charge.data["amount_refunded"] == 1_000
    action = OperatorAction.objects.get(action="topup_refund")
    assert (action.actor, action.target, action.reason) == ("olga", f"topup:{paid.pk}", "resident moved away")
    assert ledger_problems() == []


def test_a_refund_of_coins_already_spent_is_refused_and_changes_nothing(paid):
    spend(paid.user, 1_000_000)

    with pytest.raises(PaymentsError, match=r"already spent: the wallet holds 2\.333333 k of the 3\.333333 k"):
        topup_refund(paid.pk, "olga", "chargeback threat", NOW)

    assert not Refund.objects.exists()
    assert not OperatorAction.objects.filter(action="topup_refund").exists()
    assert wallet_uk(paid.user) == COINS - 1_000_000


def test_an_operator_may_refund_spent_coins_into_a_negative_frozen_wallet(paid, django_capture_on_commit_callbacks):
    spend(paid.user, 1_000_000)

    with django_capture_on_commit_callbacks(execute=True):
        topup_refund(paid.pk, "olga", "duplicate payment", NOW, accept_negative=True)

    assert wallet_uk(paid.user) == -1_000_000
    assert wallet_freeze_reason(paid.user) == "the wallet is below zero after a refund or dispute; top it up first"
    assert OperatorAction.objects.get(action="topup_refund").detail["accept_negative"] is True
    assert ledger_problems() == []


def test_a_top_up_is_refunded_once(paid, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        topup_refund(paid.pk, "olga", "first", NOW)
    with pytest.raises(PaymentsError, match="already refunded"):
        topup_refund(paid.pk, "olga", "second", NOW)
    assert Refund.objects.count() == 1


def test_a_refund_the_provider_declines_gives_the_coins_back(paid, django_capture_on_commit_callbacks):
    charge = FakeObject.objects.get(kind="charge", data__payment_intent=paid.payment_intent_id)
    FakeObject.objects.filter(pk=charge.pk).update(data={**charge.data, "amount_refunded": 1_000})  # refunded elsewhere

    with django_capture_on_commit_callbacks(execute=True):
        refund = topup_refund(paid.pk, "olga", "customer asked", NOW)

    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED and "already been refunded" in refund.error
    assert wallet_uk(paid.user) == COINS
    assert ledger_problems() == []


class Unavailable(FakeClient):
    def refund_create(self, **kwargs):
        raise ProviderUnavailable("connection reset")


def test_a_refund_sent_while_stripe_is_down_is_sent_by_the_reconciler(paid, django_capture_on_commit_callbacks):
    payments_client_install(Unavailable())
    with django_capture_on_commit_callbacks(execute=True):
        refund = topup_refund(paid.pk, "olga", "customer asked", NOW)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.REQUESTED and wallet_uk(paid.user) == 0

    payments_client_install(FakeClient())
    assert refunds_reconcile(NOW) == 0  # too fresh: the first attempt may still be running
    with django_capture_on_commit_callbacks(execute=True):
        assert refunds_reconcile(NOW + timedelta(minutes=11)) == 1

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert wallet_uk(paid.user) == 0


def test_a_dispute_takes_the_coins_back_and_freezes_the_wallet_until_won(paid, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        dispute_id = fake.fake_dispute_open(paid.payment_intent_id)

    assert wallet_uk(paid.user) == 0
    assert wallet_is_frozen(paid.user)
    assert Dispute.objects.get(pk=dispute_id).status == DisputeStatus.OPEN
    with pytest.raises(PaymentsError, match="disputed"):
        topup_refund(paid.pk, "olga", "while disputed", NOW)

    with django_capture_on_commit_callbacks(execute=True):
        fake.fake_dispute_close(dispute_id, won=True)

    assert wallet_uk(paid.user) == COINS
    assert not wallet_is_frozen(paid.user)
    assert ledger_problems() == []


def test_a_lost_dispute_keeps_the_coins_and_can_leave_the_wallet_negative(paid, django_capture_on_commit_callbacks):
    spend(paid.user, COINS)
    with django_capture_on_commit_callbacks(execute=True):
        dispute_id = fake.fake_dispute_open(paid.payment_intent_id)
        fake.fake_dispute_close(dispute_id, won=False)

    assert Dispute.objects.get(pk=dispute_id).status == DisputeStatus.LOST
    assert wallet_uk(paid.user) == -COINS
    assert wallet_is_frozen(paid.user)  # below zero: frozen until topped up
    assert ledger_problems() == []


def test_a_frozen_wallet_cannot_withdraw(paid, django_capture_on_commit_callbacks):
    credit(paid.user, 50_000_000)
    onboard(paid.user, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        fake.fake_dispute_open(paid.payment_intent_id)

    with pytest.raises(PaymentsError, match="withdrawals are paused: a card payment of yours is disputed"):
        withdrawal_request(paid.user, 10_000_000, "w-1", NOW)

    assert wallet_uk(paid.user) == 50_000_000


def test_the_refund_command_refuses_spent_coins_and_refunds_with_accept_negative(paid):
    spend(paid.user, 1_000_000)
    with pytest.raises(CommandError, match="already spent"):
        call_command("topup_refund", str(paid.pk), "--reason", "test", "--operator", "olga")

    call_command("topup_refund", str(paid.pk), "--reason", "test", "--operator", "olga", "--accept-negative")

    assert Refund.objects.get(topup=paid).status == RefundStatus.SUCCEEDED
    assert wallet_uk(paid.user) == -1_000_000
