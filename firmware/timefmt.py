"""UTC time as integer Unix seconds, without ``datetime`` (MicroPython has none).

``utc_text(1767261600) == "2026-01-01T10:00:00Z"``. Days ↔ civil dates use
Howard Hinnant's proleptic-Gregorian algorithms: exact integers, any year.
"""

_DAY_S = 86400


def _civil_from_days(days):
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def _days_from_civil(year, month, day):
    year -= 1 if month <= 2 else 0
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def utc_text(epoch_s):
    """``YYYY-MM-DDTHH:MM:SSZ`` for integer Unix seconds (years 0..9999)."""
    days, rest = divmod(epoch_s, _DAY_S)
    year, month, day = _civil_from_days(days)
    if not 0 <= year <= 9999:
        raise ValueError("year out of range")
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"


def utc_parse(text):
    """Integer Unix seconds of ``YYYY-MM-DDTHH:MM:SSZ``; ``ValueError`` otherwise."""
    if not isinstance(text, str) or len(text) != 20 or text[19] != "Z":
        raise ValueError("not YYYY-MM-DDTHH:MM:SSZ")
    for index, char in enumerate(text[:19]):
        expected = "-" if index in (4, 7) else "T" if index == 10 else ":" if index in (13, 16) else None
        if (expected is None and char not in "0123456789") or (expected is not None and char != expected):
            raise ValueError("not YYYY-MM-DDTHH:MM:SSZ")
    year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
    if not 1 <= month <= 12 or hour > 23 or minute > 59 or second > 59:
        raise ValueError("date or time out of range")
    if day < 1 or _civil_from_days(_days_from_civil(year, month, day)) != (year, month, day):
        raise ValueError("no such day")
    return _days_from_civil(year, month, day) * _DAY_S + hour * 3600 + minute * 60 + second


def interval_floor(epoch_s, interval_s):
    """Start of the ``interval_s`` interval (aligned to the Unix epoch) holding ``epoch_s``."""
    return epoch_s - epoch_s % interval_s
