"""UTC helpers: aligned, half-open intervals and one timestamp format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from utility.lib.timeutil import ensure_utc, format_utc, interval_floor, is_aligned, parse_utc

TEN = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def test_interval_floor_finds_the_start_of_the_containing_interval():
    assert interval_floor(TEN + timedelta(minutes=59, seconds=59), 3600) == TEN
    assert interval_floor(TEN, 3600) == TEN  # half-open: the start belongs to its interval
    assert interval_floor(TEN + timedelta(minutes=20), 900) == TEN + timedelta(minutes=15)


def test_interval_floor_works_on_any_offset():
    plus_two = timezone(timedelta(hours=2))
    assert interval_floor(datetime(2026, 1, 1, 12, 30, tzinfo=plus_two), 3600) == TEN


def test_is_aligned():
    assert is_aligned(TEN, 3600)
    assert not is_aligned(TEN + timedelta(minutes=30), 3600)
    assert is_aligned(TEN + timedelta(minutes=30), 1800)
    assert not is_aligned(TEN + timedelta(microseconds=1), 3600)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive"):
        ensure_utc(datetime(2026, 1, 1, 10, 0))
    with pytest.raises(ValueError, match="naive"):
        interval_floor(datetime(2026, 1, 1, 10, 0), 3600)


@pytest.mark.parametrize("text", ["2026-01-01T10:00:00Z", "2026-01-01T10:00:00+00:00", "2026-01-01T12:00:00+02:00"])
def test_parse_utc(text):
    assert parse_utc(text) == TEN
    assert parse_utc(text).tzinfo == UTC


@pytest.mark.parametrize("text", ["2026-01-01T10:00:00", "yesterday", "", "2026-13-01T10:00:00Z"])
def test_parse_utc_refuses_ambiguous_or_broken_timestamps(text):
    with pytest.raises(ValueError):
        parse_utc(text)


def test_format_utc_round_trips():
    assert format_utc(TEN) == "2026-01-01T10:00:00Z"
    assert parse_utc(format_utc(TEN)) == TEN
