"""Properties of settling contracts before the pool, for any market (hypothesis).

Expected amounts are recomputed with ``Fraction`` arithmetic, independently of
the module's integer tricks. The ledger legs are built the way
``settlement.services`` builds them and summed like the ledger would.
"""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.domain import energy_cost_uk
from settlement.domain import GridRules, MeterUsage, settle_interval
from settlement.domain.contracts import ContractTerms, Voltage, affordable_wh, cost_uk, settle_contracts

METERS = ["A", "B", "C", "D", "E"]
energy = st.one_of(st.integers(0, 30), st.integers(0, 5_000_000))
prices = st.one_of(st.integers(0, 3), st.integers(0, 5_000_000))


@st.composite
def markets(draw):
    present = draw(st.lists(st.sampled_from(METERS), unique=True, max_size=5))
    usages = [MeterUsage(meter, draw(energy), draw(energy)) for meter in present]
    contracts = []
    for contract_id in draw(st.lists(st.integers(1, 50), unique=True, max_size=6)):
        seller, buyer = draw(st.lists(st.sampled_from(METERS), unique=True, min_size=2, max_size=2))
        band = draw(st.one_of(st.none(), st.tuples(st.integers(2000, 2300), st.integers(2300, 2600))))
        contracts.append(
            ContractTerms(
                contract_id, seller, buyer, draw(prices), draw(energy),
                delivered_before_wh=draw(energy), funds_uk=draw(st.one_of(st.integers(0, 50), st.integers(0, 10**10))),
                tolerance_bp=draw(st.one_of(st.none(), st.integers(0, 10_000))),
                v_min_dv=band[0] if band else None, v_max_dv=band[1] if band else None,
            )
        )  # fmt: skip
    voltages = {
        meter: Voltage(draw(st.integers(1900, 2400)), draw(st.integers(2200, 2700)))
        for meter in draw(st.lists(st.sampled_from(METERS), unique=True))
    }
    return usages, contracts, voltages


def half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


@settings(deadline=None, max_examples=300)
@given(markets())
def test_no_energy_is_counted_twice_and_none_is_invented(market):
    usages, contracts, voltages = market
    result = settle_contracts(usages, contracts, voltages)

    into, out_of = Counter(), Counter()
    for line in result.lines:
        into[line.buyer_meter] += line.delivered_wh
        out_of[line.seller_meter] += line.delivered_wh
    assert [usage.meter for usage in result.remainder] == [usage.meter for usage in usages]
    for before, after in zip(usages, result.remainder, strict=True):
        # contract Wh + pool Wh = measured Wh, per meter and direction
        assert after.import_wh + into[before.meter] == before.import_wh
        assert after.export_wh + out_of[before.meter] == before.export_wh
        assert after.import_wh >= 0 and after.export_wh >= 0
    measured = {usage.meter for usage in usages}
    assert all(meter in measured for meter, wh in (into + out_of).items() if wh)


@settings(deadline=None, max_examples=300)
@given(markets())
def test_each_payment_is_the_exact_price_of_what_was_delivered(market):
    usages, contracts, voltages = market
    result = settle_contracts(usages, contracts, voltages)

    by_id = {terms.contract_id: terms for terms in contracts}
    for line in result.lines:
        terms = by_id[line.contract_id]
        price = Fraction(terms.price_uk_per_kwh, 1000)
        before = terms.delivered_before_wh
        expected = half_up((before + line.delivered_wh) * price) - half_up(before * price)
        assert line.amount_uk == expected
        assert 0 <= line.amount_uk <= terms.funds_uk
        assert line.delivered_wh <= min(terms.cap_wh, line.seller_export_wh, line.buyer_import_wh)
        if line.breach:
            assert (line.delivered_wh, line.amount_uk) == (0, 0)
        else:
            # Nothing held back without a reason: delivered is the most the funds allow.
            most = min(line.expected_wh, line.seller_export_wh)
            limit = affordable_wh(terms.funds_uk, before, terms.price_uk_per_kwh)
            assert line.delivered_wh == (most if limit is None else min(most, limit))
    assert result.amount_uk == sum(line.amount_uk for line in result.lines)


@settings(deadline=None, max_examples=200)
@given(markets(), st.integers(0, 10_000_000), st.integers(0, 10**9))
def test_contracts_then_pool_conserve_every_micro_coin(market, tariff, carry_in_uk):
    usages, contracts, voltages = market
    contracted = settle_contracts(usages, contracts, voltages)
    pool = settle_interval(contracted.remainder, GridRules(tariff_uk_per_kwh=tariff), carry_in_uk)

    # The legs settlement posts: escrow → seller for each contract, then the pool's.
    legs: Counter[str] = Counter()
    for line in contracted.lines:
        legs[f"escrow:{line.contract_id}"] -= line.amount_uk
        legs[f"meter:{line.seller_meter}"] += line.amount_uk
    for line in pool.lines:
        legs[f"meter:{line.meter}"] += line.credit_uk - line.debit_uk
    legs["pool"] += pool.carry_out_uk - pool.carry_in_uk
    legs["fee"] += pool.fee_uk
    assert sum(legs.values()) == 0
    # Σ buyer debits (from their escrows) = Σ seller credits, to the µk.
    assert -sum(v for k, v in legs.items() if k.startswith("escrow:")) == sum(ln.amount_uk for ln in contracted.lines)
    # The pool sees only the remainder, and its own invariant still holds.
    assert pool.import_wh == sum(usage.import_wh for usage in contracted.remainder)
    assert pool.credited_uk + pool.fee_uk + pool.carry_out_uk == pool.pool_uk
    assert pool.export_wh - pool.import_wh == (
        sum(u.export_wh for u in usages) - sum(u.import_wh for u in usages)
    )  # the loss is unchanged: contracts take equal Wh from both sides


@settings(deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_the_market_prices_energy_exactly_like_settlement(energy_wh, price):
    assert energy_cost_uk(energy_wh, price) == cost_uk(energy_wh, price) == half_up(Fraction(energy_wh * price, 1000))


@settings(deadline=None)
@given(st.integers(0, 10**12), st.integers(0, 10**7), st.integers(1, 10**7))
def test_affordable_is_the_most_the_funds_pay_for(funds_uk, before_wh, price):
    most = affordable_wh(funds_uk, before_wh, price)
    assert most is not None and most >= 0
    assert cost_uk(before_wh + most, price) - cost_uk(before_wh, price) <= funds_uk
    assert cost_uk(before_wh + most + 1, price) - cost_uk(before_wh, price) > funds_uk
