"""Withdrawals: the hold, the state machine, crashes between its steps, and
the reconciler that finishes what a crash left."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from utility.ledger.models import AccountKind
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.services import system_account, wallet_ensure
from utility.payments import fake
from utility.payments.client import payments_client_install
from utility.payments.fake import FakeClient
from utility.payments.models import ConnectedAccount, FakeObject, Withdrawal, WithdrawalStatus
from utility.payments.services import (
    PaymentsError,
    withdrawal_advance,
    withdrawal_request,
    withdrawals,
    withdrawals_reconcile,
)
from utility.payments.tests.helpers import payout, post_event

from .conftest import NOW, credit

S = WithdrawalStatus
LATER = NOW + timedelta(minutes=11)  # past the reconciler's "stuck" threshold
COINS_100 = 100_000_000
WITHDRAW_UK = 40_000_000  # 40 coins at 3.00 → 120.00 USD


class Crash(BaseException):
    """The process dies: nothing after this line runs, nothing catches it."""


class CrashingClient:
    """The stand-in, dying just ``before`` or ``after`` one named call."""

    def __init__(self, inner: FakeClient, method: str, when: str, find_works: bool = True) -> None:
        self.inner, self.method, self.when, self.find_works = inner, method, when, find_works

    def __getattr__(self, name: str):
        call = getattr(self.inner, name)
        if name.endswith("_find") and not self.find_works:
            return lambda **kwargs: None  # e.g. a list that lags behind
        if name != self.method:
            return call

        def crashing(**kwargs):
            if self.when == "before":
                raise Crash(f"before {name}")
            call(**kwargs)
            raise Crash(f"after {name}")

        return crashing


def balances(user) -> tuple[int, int, int]:
    """(wallet, payouts in flight, fiat issued) in µk. The producer's coins
    are operator credit, so a paid withdrawal leaves ``fiat_issued`` above 0."""
    return (
        account_balance(wallet_ensure(user).pk),
        account_balance(system_account(AccountKind.PAYOUTS_IN_FLIGHT).pk),
        account_balance(system_account(AccountKind.FIAT_ISSUED).pk),
    )


def transfers_of(withdrawal: Withdrawal) -> int:
    return FakeObject.objects.filter(kind="transfer", group=str(withdrawal.pk)).count()


def payouts_of(withdrawal: Withdrawal) -> int:
    return sum(
        p.data["metadata"].get("withdrawal_id") == str(withdrawal.pk) for p in FakeObject.objects.filter(kind="payout")
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("method", "when", "find_works"),
    [
        ("transfer_create", "before", True),
        ("transfer_create", "after", True),
        ("transfer_create", "after", False),  # only the idempotency key (= withdrawal id) saves us
        ("payout_create", "before", True),
        ("payout_create", "after", True),
        ("payout_create", "after", False),
    ],
)
def test_a_crash_at_any_step_boundary_then_reconciliation_pays_exactly_once(producer, method, when, find_works):
    payments_client_install(CrashingClient(FakeClient(payout_outcome=None), method, when, find_works))
    with pytest.raises(Crash):
        withdrawal_request(producer, WITHDRAW_UK, "w-1", NOW)  # the hold commits, then the worker dies
    withdrawal = Withdrawal.objects.get(request_id="w-1")
    assert withdrawal.status in {S.HELD, S.TRANSFER_CREATED}
    assert balances(producer)[:2] == (COINS_100 - WITHDRAW_UK, WITHDRAW_UK)  # the hold is not lost

    payments_client_install(CrashingClient(FakeClient(payout_outcome=None), "-", "-", find_works))
    assert withdrawals_reconcile(NOW) == 0  # not stuck yet: a worker may still be on it
    withdrawals_reconcile(LATER)
    withdrawals_reconcile(LATER + timedelta(minutes=11))  # twice is harmless

    withdrawal.refresh_from_db()
    assert withdrawal.status == S.PAYOUT_CREATED
    assert (transfers_of(withdrawal), payouts_of(withdrawal)) == (1, 1)
    fake.fake_payout_settle(withdrawal.payout_id, "paid")  # the bank's answer, as a signed event

    withdrawal.refresh_from_db()
    assert withdrawal.status == S.PAID
    assert balances(producer) == (COINS_100 - WITHDRAW_UK, 0, WITHDRAW_UK)
    assert ledger_problems() == []


@pytest.mark.django_db(transaction=True)
def test_a_crash_inside_the_hold_leaves_nothing(producer, monkeypatch):
    real = withdrawals.transaction_post

    def post_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise Crash("inside the hold's transaction")

    monkeypatch.setattr(withdrawals, "transaction_post", post_then_die)
    with pytest.raises(Crash):
        withdrawal_request(producer, WITHDRAW_UK, "w-1", NOW)

    assert not Withdrawal.objects.exists()
    assert balances(producer)[:2] == (COINS_100, 0)
    assert ledger_problems() == []


@pytest.mark.django_db(transaction=True)
def test_the_demo_stand_in_takes_a_withdrawal_all_the_way_to_paid(producer):
    withdrawal = withdrawal_request(producer, WITHDRAW_UK, "w-1", NOW)

    withdrawal.refresh_from_db()
    assert (withdrawal.status, withdrawal.amount_cents, withdrawal.currency) == (S.PAID, 12_000, "usd")
    assert withdrawal.transfer_id.startswith("tr_") and withdrawal.payout_id.startswith("po_")
    assert balances(producer) == (COINS_100 - WITHDRAW_UK, 0, WITHDRAW_UK)
    assert ledger_problems() == []


@pytest.mark.django_db(transaction=True)
def test_a_failed_payout_returns_the_coins_and_reverses_the_transfer(producer):
    payments_client_install(FakeClient(payout_outcome="failed"))

    withdrawal = withdrawal_request(producer, WITHDRAW_UK, "w-1", NOW)

    withdrawal.refresh_from_db()
    assert withdrawal.status == S.FAILED
    assert "account has been closed" in withdrawal.failure_reason
    assert withdrawal.reversal_id.startswith("trr_")
    assert FakeObject.objects.get(pk=withdrawal.transfer_id).data["reversed"] is True
    assert balances(producer) == (COINS_100, 0, 0)
    assert ledger_problems() == []


@pytest.mark.django_db(transaction=True)
def test_a_payout_that_fails_after_it_was_paid_returns_the_coins_once(producer):
    withdrawal = withdrawal_request(producer, WITHDRAW_UK, "w-1", NOW)
    withdrawal.refresh_from_db()
    assert withdrawal.status == S.PAID
    client = Client()

    late_failure = payout(withdrawal, withdrawal.payout_id, "failed")
    assert post_event(client, late_failure).status_code == 200
    assert post_event(client, payout(withdrawal, withdrawal.payout_id, "paid")).status_code == 200  # too late

    withdrawal.refresh_from_db()
    assert withdrawal.status == S.FAILED
    assert balances(producer) == (COINS_100, 0, 0)
    assert ledger_problems() == []


@pytest.mark.django_db
def test_a_withdrawal_beyond_the_wallet_is_refused_and_holds_nothing(producer):
    with pytest.raises(PaymentsError, match=r"holds 100\.000000 k; 100\.000001 k cannot be withdrawn"):
        withdrawal_request(producer, COINS_100 + 1, "w-1", NOW)

    assert not Withdrawal.objects.exists()
    assert balances(producer)[:2] == (COINS_100, 0)


@pytest.mark.django_db
def test_a_withdrawal_needs_a_connected_account_that_can_be_paid_out(make_resident):
    user = make_resident()
    credit(user, COINS_100)

    with pytest.raises(PaymentsError, match="connect your bank account"):
        withdrawal_request(user, WITHDRAW_UK, "w-1", NOW)


@pytest.mark.django_db
def test_a_withdrawal_below_one_unit_of_money_is_refused(producer):
    with pytest.raises(PaymentsError, match="at least 100 cents"):
        withdrawal_request(producer, 33_333, "w-1", NOW)  # 0.099999 USD


@pytest.mark.django_db
def test_the_same_request_id_is_one_withdrawal(producer, django_capture_on_commit_callbacks):
    payments_client_install(FakeClient(payout_outcome=None))
    with django_capture_on_commit_callbacks(execute=True):
        first = withdrawal_request(producer, WITHDRAW_UK, "w-1", NOW)
    again = withdrawal_request(producer, WITHDRAW_UK, "w-1", NOW)

    assert again.pk == first.pk
    assert balances(producer)[0] == COINS_100 - WITHDRAW_UK
    with pytest.raises(PaymentsError, match="already used"):
        withdrawal_request(producer, WITHDRAW_UK + 1, "w-1", NOW)


@pytest.mark.django_db
def test_a_declined_transfer_fails_the_withdrawal_and_returns_the_coins(producer, django_capture_on_commit_callbacks):
    payments_client_install(FakeClient(payout_outcome=None))
    account = ConnectedAccount.objects.get(user=producer)
    FakeObject.objects.filter(pk=account.stripe_account_id).update(
        data={**FakeObject.objects.get(pk=account.stripe_account_id).data, "payouts_enabled": False}
    )
    with django_capture_on_commit_callbacks(execute=True):
        withdrawal = withdrawal_request(producer, WITHDRAW_UK, "w-1", NOW)

    withdrawal.refresh_from_db()
    assert withdrawal.status == S.FAILED
    assert "transfer refused" in withdrawal.failure_reason
    assert withdrawal.reversal_id == withdrawals.NO_TRANSFER
    assert balances(producer)[:2] == (COINS_100, 0)
    assert ledger_problems() == []


@pytest.mark.django_db
def test_advancing_a_finished_withdrawal_does_nothing(producer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        withdrawal = withdrawal_request(producer, WITHDRAW_UK, "w-1", NOW)
    withdrawal.refresh_from_db()
    assert withdrawal.status == S.PAID

    assert withdrawal_advance(withdrawal.pk, LATER).status == S.PAID
    assert transfers_of(withdrawal) == 1


@pytest.mark.django_db(transaction=True)
def test_a_payout_whose_event_never_came_is_settled_by_asking_stripe(producer):
    payments_client_install(FakeClient(payout_outcome=None))
    withdrawal = withdrawal_request(producer, WITHDRAW_UK, "w-1", NOW)
    withdrawal.refresh_from_db()
    assert withdrawal.status == S.PAYOUT_CREATED
    row = FakeObject.objects.get(pk=withdrawal.payout_id)
    FakeObject.objects.filter(pk=row.pk).update(data={**row.data, "status": "paid"})  # paid, event lost

    withdrawals_reconcile(NOW + timedelta(days=1))
    assert Withdrawal.objects.get(pk=withdrawal.pk).status == S.PAYOUT_CREATED  # not overdue yet
    withdrawals_reconcile(NOW + timedelta(days=4))

    assert Withdrawal.objects.get(pk=withdrawal.pk).status == S.PAID
    assert balances(producer) == (COINS_100 - WITHDRAW_UK, 0, WITHDRAW_UK)
    assert ledger_problems() == []
