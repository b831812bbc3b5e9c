from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.timefmt import interval_floor, utc_parse, utc_text

moments = st.integers(min_value=-62135596800, max_value=253402300799)  # years 1..9999


@given(moments)
def test_utc_text_matches_datetime(epoch_s):
    expected = datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")
    assert utc_text(epoch_s) == expected
    assert utc_parse(utc_text(epoch_s)) == epoch_s


@given(moments, st.sampled_from([60, 300, 900, 3600, 86400]))
def test_interval_floor_is_aligned_and_contains(epoch_s, interval_s):
    start = interval_floor(epoch_s, interval_s)
    assert start % interval_s == 0
    assert start <= epoch_s < start + interval_s


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00",
    ],
)
def test_utc_parse_refuses_what_is_not_a_utc_second(text):
    with pytest.raises(ValueError):
        utc_parse(text)
