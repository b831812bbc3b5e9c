"""``meter_fund`` on the real database: 50 concurrent requests against a wallet
that covers 10, idempotent request ids, bad amounts, only the caller's own
wallet, and a meter in debt paid first."""

from __future__ import annotations

import inspect
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from meters.funding import Funded, FundingError, meter_fund
from meters.models import Meter, MeterDecision
from meters.mqtt import memory_publisher
from meters.tests.factories import HOUR, T0, grid_make, meter_make, reading_make, user_make
from settlement.services import settlement_close
from utility import clock
from utility.audit.models import OperatorAction
from utility.ledger.models import AccountKind, Entry, Transaction
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.services import system_account, transaction_post, wallet_ensure
from utility.ledger.tests.helpers import run_concurrently
from utility.residents.services import ResidentError

K = 1_000_000


@pytest.fixture(autouse=True)
def memory_and_clock(settings):
    """Decisions follow every funding: record them in memory, at a fixed time."""
    settings.MQTT_PUBLISHER = "memory"
    memory_publisher().clear()
    clock.clock_install(lambda: T0 + 2 * HOUR)
    yield memory_publisher()
    clock.clock_reset()
    memory_publisher().clear()


def wallet_fill(user, amount_uk: int) -> None:
    source = system_account(AccountKind.OPERATOR_CREDIT)
    transaction_post(f"fill:{user.pk}", "test_fill", [(source.pk, -amount_uk), (wallet_ensure(user).pk, amount_uk)])


def wallet_of(user) -> int:
    return account_balance(wallet_ensure(user).pk)


def books() -> tuple[int, int, list[tuple[str, int]]]:
    """Everything that would show a change: transactions, entries, balances."""
    from utility.ledger.models import Account

    return (
        Transaction.objects.count(),
        Entry.objects.count(),
        list(Account.objects.order_by("code").values_list("code", "balance_uk")),
    )


# -- concurrency ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_requests_against_a_wallet_covering_ten_give_exactly_ten():
    grid = grid_make("demo")
    meters = [meter_make(grid, f"m-{i}") for i in range(5)]
    alice = user_make("alice")
    amount_uk = 700_001  # an odd amount, so a double debit could not hide in round numbers
    wallet_fill(alice, 10 * amount_uk)

    results = run_concurrently(
        [lambda i=i: meter_fund(alice, meters[i % 5], amount_uk, f"req-{i}") for i in range(50)], timeout_s=120
    )

    funded = [r for r in results if isinstance(r, Funded)]
    refused = [r for r in results if isinstance(r, FundingError)]
    assert (len(funded), len(refused)) == (10, 40), [r for r in results if not isinstance(r, Funded | FundingError)]
    assert all(f.created for f in funded)
    assert all("cannot be moved" in str(r) and "your wallet holds" in str(r) for r in refused)
    assert wallet_of(alice) == 0
    assert sum(account_balance(m.account_id) for m in meters) == 10 * amount_uk
    assert Transaction.objects.filter(kind="funding").count() == 10
    assert ledger_problems() == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_request_move_the_coins_once():
    meter = meter_make(grid_make("demo"), "m-1")
    alice = user_make("alice")
    wallet_fill(alice, 10 * K)

    results = run_concurrently([lambda: meter_fund(alice, meter, 3 * K, "same-request") for _ in range(10)])

    assert all(isinstance(r, Funded) for r in results), results
    assert sorted(r.created for r in results) == [False] * 9 + [True]
    assert len({r.transaction.pk for r in results}) == 1
    assert (wallet_of(alice), account_balance(meter.account_id)) == (7 * K, 3 * K)
    assert ledger_problems() == []


# -- idempotency --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_retry_returns_the_original_and_a_reused_id_with_other_content_is_refused():
    grid = grid_make("demo")
    meter, other = meter_make(grid, "m-1"), meter_make(grid, "m-2")
    alice = user_make("alice")
    wallet_fill(alice, 10 * K)

    first = meter_fund(alice, meter, 2 * K, "r-1")
    again = meter_fund(alice, meter, 2 * K, "r-1")
    assert (first.created, again.created) == (True, False)
    assert again.transaction.pk == first.transaction.pk
    assert (again.debt_paid_uk, again.meter_balance_uk) == (0, 2 * K)
    before = books()
    for meter_, amount in [(meter, 3 * K), (other, 2 * K)]:
        with pytest.raises(FundingError, match="request id 'r-1' was already used for a different funding"):
            meter_fund(alice, meter_, amount, "r-1")
    assert books() == before
    assert (wallet_of(alice), account_balance(meter.account_id)) == (8 * K, 2 * K)


@pytest.mark.django_db
def test_request_ids_belong_to_their_resident():
    meter = meter_make(grid_make("demo"), "m-1")
    alice, bob = user_make("alice"), user_make("bob")
    wallet_fill(alice, 5 * K)
    wallet_fill(bob, 5 * K)
    meter_fund(alice, meter, K, "1")
    bobs = meter_fund(bob, meter, K, "1")  # bob's app also starts counting at 1
    assert bobs.created
    assert (wallet_of(alice), wallet_of(bob), account_balance(meter.account_id)) == (4 * K, 4 * K, 2 * K)


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_bad_amounts_and_request_ids_get_clear_errors_and_change_nothing(django_capture_on_commit_callbacks):
    grid = grid_make("demo")
    meter = meter_make(grid, "m-1")
    alice = user_make("alice")
    wallet_fill(alice, 5 * K)
    before = books()
    cases = [
        (0, "r", "amount must be positive, got 0"),
        (-5, "r", "amount must be positive, got -5"),
        (1.5, "r", "whole number of µk, got 1.5"),
        (2.0, "r", "whole number of µk, got 2.0"),
        ("1000", "r", "whole number of µk, got '1000'"),
        (Decimal("1000"), "r", "whole number of µk"),
        (True, "r", "whole number of µk, got True"),
        (None, "r", "whole number of µk, got None"),
        (5 * K + 1, "r", "your wallet holds 5000000 µk; 5000001 µk cannot be moved"),
        (K, "", "a request id of 1 to 100 characters is required"),
        (K, "   ", "a request id"),
        (K, "x" * 101, "a request id"),
        (K, None, "a request id"),
    ]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        for amount, request_id, message in cases:
            with pytest.raises(ResidentError, match=message.replace("(", r"\(")):
                meter_fund(alice, meter, amount, request_id)
    assert callbacks == []  # no decision was even scheduled
    assert books() == before
    assert MeterDecision.objects.count() == 0


@pytest.mark.django_db
def test_inactive_meters_and_residents_and_anonymous_callers_are_refused():
    from django.contrib.auth.models import AnonymousUser

    grid = grid_make("demo")
    meter, retired = meter_make(grid, "m-1"), meter_make(grid, "m-old")
    Meter.objects.filter(pk=retired.pk).update(active=False)
    alice, gone = user_make("alice"), user_make("gone")
    wallet_fill(alice, 5 * K)
    wallet_fill(gone, 5 * K)
    gone.is_active = False
    gone.save()
    before = books()
    with pytest.raises(FundingError, match="meter m-old is not active"):
        meter_fund(alice, retired, K, "r")  # the instance still says active; the database decides
    with pytest.raises(FundingError, match="resident 'gone' is not active"):
        meter_fund(gone, meter, K, "r")
    with pytest.raises(FundingError, match="only a signed-in resident"):
        meter_fund(AnonymousUser(), meter, K, "r")
    assert books() == before


# -- only the caller's own wallet ------------------------------------------------------------------


def test_the_service_has_no_way_to_name_another_wallet():
    assert list(inspect.signature(meter_fund).parameters) == [
        "resident",
        "meter",
        "amount_uk",
        "request_id",
        "operator",
    ]


@pytest.mark.django_db
def test_a_resident_funds_any_meter_but_only_from_their_own_wallet():
    grid = grid_make("demo")
    alice, bob = user_make("alice"), user_make("bob")
    bobs_house = meter_make(grid, "bob-house", owner=bob)
    light = meter_make(grid, "light-7", public=True)
    wallet_fill(bob, 50 * K)

    # Alice's wallet is empty: funding bob's house does not fall back to bob's wallet.
    with pytest.raises(FundingError, match="your wallet holds 0 µk"):
        meter_fund(alice, bobs_house, K, "r-1")
    assert (wallet_of(alice), wallet_of(bob)) == (0, 50 * K)

    wallet_fill(alice, 3 * K)
    meter_fund(alice, bobs_house, K, "r-2")
    meter_fund(alice, light, 2 * K, "r-3")  # a street light, found by its public id
    assert (wallet_of(alice), wallet_of(bob)) == (0, 50 * K)
    assert (account_balance(bobs_house.account_id), account_balance(light.account_id)) == (K, 2 * K)
    legs = Entry.objects.filter(transaction__kind="funding", amount_uk__lt=0).values_list("account__code", flat=True)
    assert set(legs) == {"wallet:alice"}


@pytest.mark.django_db
def test_the_fund_command_debits_only_the_from_resident():
    grid = grid_make("demo")
    alice, bob = user_make("alice"), user_make("bob")
    meter_make(grid, "bob-house", owner=bob)
    wallet_fill(bob, 50 * K)
    with pytest.raises(CommandError, match="your wallet holds 0 µk"):
        call_command("fund", "demo", "bob-house", "1000000", "--from", "alice", "--operator", "olga")
    assert (wallet_of(alice), wallet_of(bob)) == (0, 50 * K)
    call_command("fund", "demo", "bob-house", "1000000", "--from", "bob", "--operator", "olga")
    assert wallet_of(bob) == 49 * K
    action = OperatorAction.objects.get()
    assert (action.actor, action.action, action.target) == ("olga", "meter_fund", "meter:bob-house")
    assert action.detail["resident"] == "bob" and action.detail["amount_uk"] == K


# -- a meter in debt -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_meter_in_debt_is_paid_off_first_then_reconnected(django_capture_on_commit_callbacks):
    grid = grid_make("demo", credit_limit_uk=5 * K)
    carlos = meter_make(grid, "carlos")
    reading_make(carlos, T0, import_wh=3_000)
    settlement_close(grid.pk, T0, T0 + 2 * HOUR)
    assert account_balance(carlos.account_id) == -3 * K  # within the credit limit: still on
    alice = user_make("alice")
    wallet_fill(alice, 10 * K)

    with django_capture_on_commit_callbacks(execute=True):
        first = meter_fund(alice, carlos, 2 * K, "r-1")
    assert (first.debt_paid_uk, first.meter_balance_uk) == (2 * K, -K)
    with django_capture_on_commit_callbacks(execute=True):
        second = meter_fund(alice, carlos, 5 * K, "r-2")
    assert (second.debt_paid_uk, second.meter_balance_uk) == (K, 4 * K)
    with django_capture_on_commit_callbacks(execute=True):
        third = meter_fund(alice, carlos, K, "r-3")
    assert (third.debt_paid_uk, third.meter_balance_uk) == (0, 5 * K)
    assert wallet_of(alice) == 2 * K
    assert ledger_problems() == []


@pytest.mark.django_db
def test_a_meter_cut_for_debt_past_the_limit_comes_back_only_once_debt_and_one_interval_are_paid(
    memory_and_clock, django_capture_on_commit_callbacks
):
    grid = grid_make("demo", credit_limit_uk=K)
    carlos = meter_make(grid, "carlos")
    reading_make(carlos, T0, import_wh=3_000)
    settlement_close(grid.pk, T0, T0 + 2 * HOUR)
    alice = user_make("alice")
    wallet_fill(alice, 10 * K)
    with django_capture_on_commit_callbacks(execute=True):
        meter_fund(alice, carlos, K, "r-0")  # -2 k: past the 1 k limit, so the decision is a cut
    assert list(MeterDecision.objects.values_list("state", "balance_uk")) == [("disconnect", -2 * K)]
    with django_capture_on_commit_callbacks(execute=True):
        meter_fund(alice, carlos, 4 * K, "r-1")  # 2 k: debt gone, but one interval costs 3 k
    assert MeterDecision.objects.count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        meter_fund(alice, carlos, K, "r-2")  # 3 k
    assert list(MeterDecision.objects.order_by("seq").values_list("state", "reason", "balance_uk")) == [
        ("disconnect", "funds_exhausted", -2 * K),
        ("connect", "funded", 3 * K),
    ]
    assert [m.json()["state"] for m in memory_and_clock.messages] == ["disconnect", "connect"]
