"""The prepaid operator CLI: ``fund``, ``meter_state``, ``wallet_credit``,
``meter_force`` and ``meters_running_out``, with what they print and every bad
input refused with a clear error and no change."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from meters.models import Meter, MeterDecision
from meters.mqtt import memory_publisher
from meters.tests.factories import HOUR, T0, grid_make, meter_make, reading_make, user_make
from utility import clock
from utility.audit.models import OperatorAction
from utility.ledger.models import Account, AccountKind, Transaction
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.services import system_account, transaction_post, wallet_ensure

pytestmark = pytest.mark.django_db
K = 1_000_000


@pytest.fixture(autouse=True)
def memory_and_clock(settings):
    settings.MQTT_PUBLISHER = "memory"
    memory_publisher().clear()
    clock.clock_install(lambda: T0 + 3 * HOUR)
    yield
    clock.clock_reset()
    memory_publisher().clear()


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def books() -> tuple:
    return (
        Transaction.objects.count(),
        list(Account.objects.order_by("code").values_list("code", "balance_uk")),
        MeterDecision.objects.count(),
        OperatorAction.objects.count(),
    )


def refused(command: str, *args: str, match: str) -> None:
    """The command fails with a clear error mentioning ``match`` and changes nothing."""
    before = books()
    with pytest.raises(CommandError, match=match):
        run(command, *args)
    assert books() == before


@pytest.fixture
def grid_with_carlos():
    grid = grid_make("demo")
    carlos = meter_make(grid, "carlos")
    alice = user_make("alice")
    source = system_account(AccountKind.OPERATOR_CREDIT)
    transaction_post("fill", "test", [(source.pk, -10 * K), (wallet_ensure(alice).pk, 10 * K)])
    return grid, carlos


# -- fund -------------------------------------------------------------------------------------------


def test_fund_moves_coins_and_a_repeated_request_id_is_applied_once(
    grid_with_carlos, django_capture_on_commit_callbacks
):
    _, carlos = grid_with_carlos
    with django_capture_on_commit_callbacks(execute=True):
        out = run("fund", "demo", "carlos", "2500000", "--from", "alice", "--request-id", "r-1", "--operator", "olga")
    assert out == "funded carlos with 2.500000 k from alice; meter balance 2.500000 k\n"
    again = run("fund", "demo", "carlos", "2500000", "--from", "alice", "--request-id", "r-1")
    assert again.startswith("already applied: carlos")
    assert account_balance(carlos.account_id) == 2_500_000
    assert OperatorAction.objects.get().actor == "olga"


def test_fund_says_how_much_paid_the_debt(grid_with_carlos):
    _, carlos = grid_with_carlos
    source = system_account(AccountKind.OPERATOR_CREDIT)
    transaction_post("debt", "test", [(carlos.account_id, -K), (source.pk, K)])
    out = run("fund", "demo", "carlos", "3000000", "--from", "alice")
    assert out == "funded carlos with 3.000000 k from alice (1.000000 k paid its debt); meter balance 2.000000 k\n"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("demo", "carlos", "abc", "--from", "alice"), "AMOUNT_UK must be a whole number of µk, got 'abc'"),
        (("demo", "carlos", "1.5", "--from", "alice"), "AMOUNT_UK must be a whole number"),
        (("demo", "carlos", "0", "--from", "alice"), "amount must be positive"),
        (("demo", "carlos", "-5", "--from", "alice"), "amount must be positive, got -5"),
        (("demo", "carlos", "10000001", "--from", "alice"), "your wallet holds 10000000 µk"),
        (("demo", "nobody", "5", "--from", "alice"), "no meter 'nobody' on grid 'demo'"),
        (("elsewhere", "carlos", "5", "--from", "alice"), "no meter 'carlos' on grid 'elsewhere'"),
        (("demo", "carlos", "5", "--from", "mallory"), "no active resident named 'mallory'"),
        (("demo", "carlos", "5"), "the following arguments are required: --from"),
        (("demo", "carlos", "5", "--from", "alice", "--request-id", "x" * 101), "a request id of 1 to 100"),
    ],
)
def test_fund_refuses_bad_input(grid_with_carlos, args, match):
    refused("fund", *args, match=match)


# -- meter_state -------------------------------------------------------------------------------------


def test_meter_state_shows_balance_state_hours_left_and_decisions(grid_with_carlos, django_capture_on_commit_callbacks):
    _, carlos = grid_with_carlos
    for hour in range(2):
        reading_make(carlos, T0 + hour * HOUR, import_wh=2_000)
    with django_capture_on_commit_callbacks(execute=True):
        run("fund", "demo", "carlos", "9000000", "--from", "alice")  # 9 k at 2 k/h: 4 h, a low warning
    text = run("meter_state", "demo", "carlos")
    assert text == (
        "carlos (consumer) on demo: balance 9.000000 k, connect, 4.0 h left\n"
        "decision #1: connect (low_balance) at 2026-01-01T03:00:00Z by system\n"
    )
    state = json.loads(run("meter_state", "demo", "carlos", "--json"))
    assert state == {
        "meter": "carlos",
        "grid": "demo",
        "kind": "consumer",
        "active": True,
        "balance_uk": 9 * K,
        "state": "connect",
        "held_by_operator": False,
        "never_disconnect": False,
        "avg_cost_uk_per_interval": 2 * K,
        "intervals_left": 4,
        "hours_left": 4.0,
        "last_decision": {
            "seq": 1,
            "state": "connect",
            "reason": "low_balance",
            "balance_uk": 9 * K,
            "issued_at": "2026-01-01T03:00:00Z",
            "issued_by": "system",
            "published": True,
        },
        "decisions": [state["last_decision"]],
    }


def test_meter_state_history_shows_who_forced_what(grid_with_carlos, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run("meter_force", "demo", "carlos", "disconnect", "--reason", "meter opened", "--operator", "olga")
    text = run("meter_state", "demo", "carlos", "--history", "5")
    assert "carlos (consumer) on demo: balance 0.000000 k, disconnect, held by an operator, never runs out" in text
    assert "decision #1: disconnect (operator) at 2026-01-01T03:00:00Z by olga" in text
    state = json.loads(run("meter_state", "demo", "carlos", "--json"))
    assert (state["held_by_operator"], state["hours_left"], state["last_decision"]["issued_by"]) == (True, None, "olga")


def test_meter_state_of_a_meter_never_decided(grid_with_carlos):
    assert run("meter_state", "demo", "carlos").endswith("no decision sent yet\n")
    assert json.loads(run("meter_state", "demo", "carlos", "--json"))["last_decision"] is None


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("demo", "nobody"), "no meter 'nobody' on grid 'demo'"),
        (("other", "carlos"), "no meter 'carlos' on grid 'other'"),
        (("demo", "carlos", "--history", "0"), "--history must be at least 1"),
        (("demo", "carlos", "--history", "many"), "invalid int value: 'many'"),
        (("demo",), "the following arguments are required: meter_id"),
    ],
)
def test_meter_state_refuses_bad_input(grid_with_carlos, args, match):
    refused("meter_state", *args, match=match)


# -- wallet_credit ----------------------------------------------------------------------------------------


def test_wallet_credit_records_the_operator_and_applies_a_request_id_once():
    bob = user_make("bob")
    out = run("wallet_credit", "bob", "5000000", "--reason", "demo coins", "--operator", "olga", "--request-id", "c-1")
    assert out == "credited 5.000000 k to bob (transaction wallet_credit:c-1)\n"
    run("wallet_credit", "bob", "5000000", "--reason", "demo coins", "--operator", "olga", "--request-id", "c-1")
    assert account_balance(wallet_ensure(bob).pk) == 5 * K
    action = OperatorAction.objects.get()
    assert (action.actor, action.action, action.target, action.reason) == (
        "olga",
        "wallet_credit",
        "wallet:bob",
        "demo coins",
    )
    assert action.detail == {"amount_uk": 5 * K, "request_id": "c-1"}
    assert Transaction.objects.get(idempotency_key="wallet_credit:c-1").memo == "olga: demo coins"
    assert ledger_problems() == []


def test_wallet_credit_defaults_to_the_os_user_as_operator():
    import getpass

    user_make("bob")
    run("wallet_credit", "bob", "1", "--reason", "test")
    assert OperatorAction.objects.get().actor == getpass.getuser()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("bob", "lots", "--reason", "x"), "AMOUNT_UK must be a whole number of µk, got 'lots'"),
        (("bob", "2.5", "--reason", "x"), "AMOUNT_UK must be a whole number"),
        (("bob", "0", "--reason", "x"), "amount must be positive, got 0"),
        (("bob", "-3", "--reason", "x"), "amount must be positive, got -3"),
        (("bob", "5", "--reason", "   "), "a reason is required"),
        (("bob", "5"), "the following arguments are required: --reason"),
        (("mallory", "5", "--reason", "x"), "no active resident named 'mallory'"),
        (("bob", "7", "--reason", "x", "--request-id", "used"), "already used for a different movement"),
        (("bob", "5", "--reason", "x", "--operator", ""), "operator"),
    ],
)
def test_wallet_credit_refuses_bad_input(args, match):
    user_make("bob")
    run("wallet_credit", "bob", "5", "--reason", "first", "--request-id", "used")
    refused("wallet_credit", *args, match=match)


# -- meter_force and meters_running_out ----------------------------------------------------------------------


def test_meter_force_and_release(grid_with_carlos, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        out = run("meter_force", "demo", "carlos", "connect", "--reason", "hospital visit", "--operator", "olga")
    assert out == "carlos: connect (decision #1), held until released\n"
    with django_capture_on_commit_callbacks(execute=True):
        out = run("meter_force", "demo", "carlos", "release", "--reason", "back home", "--operator", "olga")
    assert out == "carlos: disconnect (decision #2)\n"  # no coins: the rules cut it
    assert list(OperatorAction.objects.order_by("at", "pk").values_list("action", "reason")) == [
        ("meter_force_state", "hospital visit"),
        ("meter_release", "back home"),
    ]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("demo", "carlos", "off", "--reason", "x"), "invalid choice: 'off'"),
        (("demo", "carlos", "disconnect"), "the following arguments are required: --reason"),
        (("demo", "carlos", "disconnect", "--reason", " "), "a reason is required"),
        (("demo", "carlos", "release", "--reason", "x"), "not held by an operator"),
        (("demo", "clinic", "disconnect", "--reason", "x"), "never-disconnect"),
        (("demo", "ghost", "connect", "--reason", "x"), "no meter 'ghost' on grid 'demo'"),
    ],
)
def test_meter_force_refuses_bad_input(grid_with_carlos, args, match):
    grid, _ = grid_with_carlos
    clinic = meter_make(grid, "clinic")
    Meter.objects.filter(pk=clinic.pk).update(never_disconnect=True)
    refused("meter_force", *args, match=match)


def test_meters_running_out_lists_who_runs_out_within_a_day(grid_with_carlos):
    grid, carlos = grid_with_carlos
    danny = meter_make(grid, "danny")
    source = system_account(AccountKind.OPERATOR_CREDIT)
    transaction_post("d", "test", [(source.pk, -100 * K), (danny.account_id, 100 * K)])
    for hour in range(2):
        reading_make(carlos, T0 + hour * HOUR, import_wh=1_000)
        reading_make(danny, T0 + hour * HOUR, import_wh=1_000)
    text = run("meters_running_out", "demo")
    assert text.splitlines()[0] == "1 meters on demo run out within 24 h"
    assert text.splitlines()[1].split() == ["carlos", "connect", "balance", "0.000000", "k", "0.0", "h", "left"]
    rows = json.loads(run("meters_running_out", "demo", "--within-hours", "200", "--json"))
    assert [(r["meter"], r["hours_left"]) for r in rows] == [("carlos", 0.0), ("danny", 100.0)]
    refused("meters_running_out", "nowhere", match="no grid 'nowhere'")
    refused("meters_running_out", "demo", "--within-hours", "0", match="within_hours must be a positive")
    refused("meters_running_out", "demo", "--within-hours", "1.5", match="invalid int value")
