"""Property: any sequence of balanced posts keeps the books exact."""

from __future__ import annotations

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from utility.ledger.models import Account
from utility.ledger.selectors import account_balance_from_entries, ledger_problems
from utility.ledger.services import transaction_post

from .helpers import accounts_make

ACCOUNT_COUNT = 5

# One movement: some (account index, amount µk) legs plus a balancing leg.
legs_strategy = st.lists(
    st.tuples(st.integers(0, ACCOUNT_COUNT - 1), st.integers(-(10**12), 10**12)), min_size=1, max_size=6
)
movements_strategy = st.lists(st.tuples(legs_strategy, st.integers(0, ACCOUNT_COUNT - 1)), min_size=1, max_size=12)


class _Rollback(Exception):
    pass


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(movements=movements_strategy, repost=st.booleans())
def test_random_balanced_posts_keep_the_sum_zero_and_the_cache_exact(movements, repost):
    try:
        with transaction.atomic():  # each example starts from an empty ledger
            accounts = accounts_make(*(f"a{i}" for i in range(ACCOUNT_COUNT)))
            expected = [0] * ACCOUNT_COUNT
            for number, (legs, balancing) in enumerate(movements):
                legs = [*legs, (balancing, -sum(amount for _, amount in legs))]
                ledger_legs = [(accounts[index].pk, amount) for index, amount in legs]
                transaction_post(f"p-{number}", "test", ledger_legs)
                if repost:  # a retry changes nothing
                    assert transaction_post(f"p-{number}", "test", ledger_legs).created is False
                for index, amount in legs:
                    expected[index] += amount

            cached = [Account.objects.get(pk=a.pk).balance_uk for a in accounts]
            assert cached == expected
            assert sum(cached) == 0
            assert cached == [account_balance_from_entries(a.pk) for a in accounts]
            assert ledger_problems() == []
            raise _Rollback
    except _Rollback:
        pass
