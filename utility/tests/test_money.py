"""Money helpers: half-up division, the largest-remainder split, parsing and display."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from utility.lib.money import coins_to_uk, div_round_half_up, format_uk, ratio_split


@pytest.mark.parametrize(
    ("numerator", "denominator", "quotient"),
    [(0, 7, 0), (1, 2, 1), (1, 3, 0), (2, 3, 1), (5, 2, 3), (7, 2, 4), (10, 5, 2), (499, 1000, 0), (500, 1000, 1)],
)
def test_div_round_half_up(numerator, denominator, quotient):
    assert div_round_half_up(numerator, denominator) == quotient


@pytest.mark.parametrize(("numerator", "denominator"), [(1, 0), (1, -2), (-1, 2)])
def test_div_round_half_up_refuses_what_it_cannot_round_honestly(numerator, denominator):
    with pytest.raises(ValueError):
        div_round_half_up(numerator, denominator)


@given(st.integers(0, 10**15), st.integers(1, 10**9))
def test_div_round_half_up_is_the_nearest_integer_with_halves_up(numerator, denominator):
    assert div_round_half_up(numerator, denominator) == math.floor(Fraction(numerator, denominator) + Fraction(1, 2))


def test_the_seed_split_sums_to_the_pool_where_a_plain_round_down_loses_a_micro_coin():
    # 4.99 k over exports of 3 and 2.5 kWh.
    assert ratio_split(4_990_000, [3000, 2500], ["Angel", "Bennie"]) == [2_721_818, 2_268_182]
    naive = [4_990_000 * weight // 5500 for weight in (3000, 2500)]
    assert sum(naive) == 4_989_999


def naive_split(total: int, weights: list[int]) -> list[int]:
    """The plain round-down split the largest-remainder method replaces."""
    return [total * weight // sum(weights) for weight in weights]


splits = st.tuples(
    st.integers(0, 10**12),
    st.lists(st.integers(0, 10**6), min_size=1, max_size=30).filter(lambda weights: sum(weights) > 0),
)


def test_hypothesis_finds_the_round_down_bug_that_ratio_split_does_not_have():
    total, weights = find(splits, lambda case: sum(naive_split(*case)) != case[0])
    # Hypothesis shrinks it to one unit over two equal weights: (1, [1, 1]).
    assert sum(naive_split(total, weights)) != total
    assert sum(ratio_split(total, weights, [str(i) for i in range(len(weights))])) == total


@settings(deadline=None)
@given(splits)
def test_shares_sum_exactly_and_each_is_within_one_unit_of_its_exact_share(case):
    total, weights = case
    shares = ratio_split(total, weights, [f"k{i:02d}" for i in range(len(weights))])
    assert sum(shares) == total
    for share, weight in zip(shares, weights, strict=True):
        exact = Fraction(total * weight, sum(weights))
        assert math.floor(exact) <= share <= math.ceil(exact)
        if weight == 0:
            assert share == 0


@settings(deadline=None)
@given(splits, st.randoms(use_true_random=False))
def test_the_split_follows_the_keys_not_the_positions(case, random):
    total, weights = case
    keys = [f"k{i:02d}" for i in range(len(weights))]
    by_key = dict(zip(keys, ratio_split(total, weights, keys), strict=True))
    order = list(range(len(weights)))
    random.shuffle(order)
    shuffled = ratio_split(total, [weights[i] for i in order], [keys[i] for i in order])
    assert {keys[i]: share for i, share in zip(order, shuffled, strict=True)} == by_key


def test_ties_go_to_the_lower_key_in_string_order():
    assert ratio_split(1, [1, 1], ["b", "a"]) == [0, 1]
    assert ratio_split(1, [1, 1], ["M-9", "M-10"]) == [0, 1]
    assert ratio_split(2, [1, 1, 1], ["c", "a", "b"]) == [0, 1, 1]


def test_a_larger_remainder_wins_before_the_key_is_considered():
    assert ratio_split(10, [1, 2], ["a", "z"]) == [3, 7]


@pytest.mark.parametrize(
    ("total", "weights", "keys"),
    [
        (-1, [1], ["a"]),
        (1, [0, 0], ["a", "b"]),
        (1, [], []),
        (1, [2, -1], ["a", "b"]),
        (1, [1], ["a", "b"]),
        (1.0, [1], ["a"]),
        (1, [1.5], ["a"]),
        (1, [True], ["a"]),
    ],
)
def test_ratio_split_refuses_bad_input(total, weights, keys):
    with pytest.raises(ValueError):
        ratio_split(total, weights, keys)


@pytest.mark.parametrize(
    ("text", "amount_uk"),
    [("2.721818", 2_721_818), ("0", 0), ("1", 1_000_000), (" 0.01 ", 10_000), ("-0.5", -500_000), ("1e-6", 1)],
)
def test_coins_to_uk(text, amount_uk):
    assert coins_to_uk(text) == amount_uk


@pytest.mark.parametrize("text", ["", "abc", "0.0000001", "NaN", "Infinity", "1,5"])
def test_coins_to_uk_refuses_what_is_not_an_exact_amount(text):
    with pytest.raises(ValueError):
        coins_to_uk(text)


@pytest.mark.parametrize(
    ("amount_uk", "text"), [(2_721_818, "2.721818"), (0, "0.000000"), (1, "0.000001"), (-10_000, "-0.010000")]
)
def test_format_uk(amount_uk, text):
    assert format_uk(amount_uk) == text


@given(st.integers(-(10**15), 10**15))
def test_format_and_parse_round_trip(amount_uk):
    assert coins_to_uk(format_uk(amount_uk)) == amount_uk
