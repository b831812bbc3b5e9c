"""The display filters: integers in, exact decimal text out."""

from __future__ import annotations

from datetime import UTC, datetime

from web.forms import coins_parse
from web.templatetags.web_format import coins, duration_s, hours_left, kwh, percent_bp, utc


def test_filters():
    assert coins(2_721_818) == "2.721818" and coins(-450_000) == "-0.450000" and coins(None) == "–"
    assert kwh(2500) == "2.500" and kwh(None) == "–"
    assert percent_bp(1234) == "12.34 %" and percent_bp(-922) == "-9.22 %" and percent_bp(None) == "–"
    assert duration_s(5400) == "1 h 30 min" and duration_s(59) == "59 s" and duration_s(None) == "–"
    assert hours_left(None) == "no recent use" and hours_left(0) == "less than an hour"
    assert hours_left(5) == "about 5 h" and hours_left(72) == "about 3 days"
    assert utc(datetime(2026, 1, 1, 14, 0, tzinfo=UTC)) == "Thu 1 Jan 14:00" and utc(None) == "–"


def test_coins_parse_is_exact():
    assert coins_parse("2.721818") == 2_721_818
    assert coins_parse(" 1,000.5 ") == 1_000_500_000
    assert coins_parse("0.000001") == 1
