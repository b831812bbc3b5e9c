"""Every ordering of a payment's events ends in the same ledger state.

Stripe does not promise order: a dispute or a refund can arrive before the
payment's own event. Each example posts one scenario's signed events, in an
order hypothesis picks, to the real webhook view, then compares the wallet,
``fiat_issued`` and the top-up with the scenario's one right answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from utility.ledger.models import AccountKind
from utility.ledger.selectors import account_balance, ledger_problems
from utility.ledger.services import system_account, wallet_ensure
from utility.payments.models import TopUp, TopUpStatus, WebhookEvent
from utility.payments.selectors import wallet_is_frozen
from utility.payments.services import topup_create
from utility.payments.tests.helpers import Payment, event, post_event

from .conftest import NOW

pytestmark = pytest.mark.django_db

COINS = 3_333_333  # 10.00 at 3.00 a coin


@dataclass(frozen=True)
class Scenario:
    name: str
    events: tuple[str, ...]
    wallet_uk: int
    frozen: bool


SCENARIOS = [
    Scenario("refunded", ("completed", "succeeded", "refunded_all"), 0, False),
    Scenario("partly refunded twice", ("completed", "succeeded", "refunded_300", "refunded_all"), 0, False),
    Scenario("dispute open", ("completed", "succeeded", "dispute_created"), 0, True),
    Scenario("dispute won", ("completed", "succeeded", "dispute_created", "dispute_won"), COINS, False),
    Scenario("dispute lost", ("completed", "succeeded", "dispute_created", "dispute_lost"), 0, False),
    # 4.00 refunded (1.333333 coins), then the other 6.00 disputed and won.
    Scenario(
        "refund and won dispute",
        ("completed", "succeeded", "refunded_400", "dispute_600_created", "dispute_600_won"),
        COINS - 1_333_333,
        False,
    ),
]


def _events(payment: Payment) -> dict[str, dict]:
    return {
        "completed": payment.completed(),
        "succeeded": payment.intent_succeeded(),
        "refunded_300": event("charge.refunded", payment.charge(amount_refunded=300)),
        "refunded_400": event("charge.refunded", payment.charge(amount_refunded=400)),
        "refunded_all": event("charge.refunded", payment.charge(amount_refunded=1_000)),
        "dispute_created": event("charge.dispute.created", payment.dispute("dp_a", "needs_response")),
        "dispute_won": event("charge.dispute.closed", payment.dispute("dp_a", "won")),
        "dispute_lost": event("charge.dispute.closed", payment.dispute("dp_a", "lost")),
        "dispute_600_created": event("charge.dispute.created", payment.dispute("dp_b", "needs_response", 600)),
        "dispute_600_won": event("charge.dispute.closed", payment.dispute("dp_b", "won", 600)),
    }


@st.composite
def scenario_orderings(draw) -> tuple[Scenario, list[str]]:
    scenario = draw(st.sampled_from(SCENARIOS))
    return scenario, draw(st.permutations(scenario.events))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=scenario_orderings())
def test_every_ordering_of_a_payments_events_ends_in_the_same_ledger_state(make_resident, case):
    scenario, order = case
    user = make_resident()
    payment = Payment(topup_create(user, 1_000, NOW))
    # Dispute ids are Stripe's and global: make them this example's own.
    events = _events(payment)
    for name in order:
        obj = events[name]["data"]["object"]
        if obj["object"] == "dispute":
            obj["id"] = f"{obj['id']}_{payment.topup.pk.hex}"
    issued_before = account_balance(system_account(AccountKind.FIAT_ISSUED).pk)
    client = Client()

    results = [post_event(client, events[name]).status_code for name in order]

    assert results == [200] * len(order)
    topup = TopUp.objects.get(pk=payment.topup.pk)
    assert account_balance(wallet_ensure(user).pk) == scenario.wallet_uk, (scenario.name, order)
    issued_delta = account_balance(system_account(AccountKind.FIAT_ISSUED).pk) - issued_before
    assert issued_delta == -scenario.wallet_uk
    assert (topup.status, topup.credited_uk, topup.taken_back_uk) == (
        TopUpStatus.PAID,
        COINS,
        COINS - scenario.wallet_uk,
    )
    assert wallet_is_frozen(user) is scenario.frozen
    ids = [events[name]["id"] for name in order]
    assert WebhookEvent.objects.filter(pk__in=ids, processed_at__isnull=True).count() == 0
    assert ledger_problems() == []
