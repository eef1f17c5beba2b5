"""Time values on the wire: RFC 3339 output and the relative/absolute input grammar.

Times are held as integer nanoseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import calendar
import re
import time as _time
from datetime import datetime, timedelta, timezone

from memtrace_server.core.errors import BadRequest

NS_PER_SECOND = 1_000_000_000
_UNIT_NS = {
    "s": NS_PER_SECOND,
    "m": 60 * NS_PER_SECOND,
    "h": 3600 * NS_PER_SECOND,
    "d": 86400 * NS_PER_SECOND,
    "w": 7 * 86400 * NS_PER_SECOND,
}
MAX_RELATIVE_NS = 365 * _UNIT_NS["d"]
_RELATIVE_RE = re.compile(r"^([0-9]{1,9})([smhdw])$")
_ABSOLUTE_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)
TIME_GRAMMAR_HELP = (
    "use a relative window such as 30s, 15m, 24h, 7d or 2w (up to 365 days), "
    "or an ISO 8601 / RFC 3339 timestamp such as 2026-02-07T20:00:00Z"
)


def now_ns() -> int:
    """The current time in nanoseconds since the epoch."""
    return _time.time_ns()


_DATES: dict[int, str] = {}  # day since the epoch -> "YYYY-MM-DDT"
_MAX_DATES = 4096
# Every read renders each memory's time: tables of the clock's parts take it from 2.1 to
# 0.9 µs, against formatting hours, minutes and seconds each time.
_MINUTES = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SECONDS = [f"{s:02d}" for s in range(60)]


def format_rfc3339(ns: int) -> str:
    """Render UTC nanoseconds like Go's RFC3339Nano: fraction trimmed of zeros, ``Z``."""
    seconds, frac = divmod(ns, NS_PER_SECOND)
    day, second = divmod(seconds, 86400)
    date = _DATES.get(day)
    if date is None:
        if len(_DATES) >= _MAX_DATES:
            _DATES.clear()
        date = _DATES[day] = _time.strftime("%Y-%m-%dT", _time.gmtime(day * 86400))
    minute, second = divmod(second, 60)
    if frac:
        fraction = f"{frac:09d}".rstrip("0")
        return f"{date}{_MINUTES[minute]}{_SECONDS[second]}.{fraction}Z"
    return f"{date}{_MINUTES[minute]}{_SECONDS[second]}Z"


def parse_relative(value: str) -> int | None:
    """Nanoseconds of a relative window like ``24h``; None if the text is not of that form.

    Raises BadRequest for a well-formed window that is zero or longer than 365 days.
    """
    match = _RELATIVE_RE.match(value)
    if match is None:
        return None
    span = int(match.group(1)) * _UNIT_NS[match.group(2)]
    if span <= 0 or span > MAX_RELATIVE_NS:
        raise BadRequest(f"invalid time window '{value}': must be between 1 unit and 365 days")
    return span


def parse_timestamp(value: str) -> int | None:
    """Nanoseconds of an ISO 8601 / RFC 3339 timestamp; None if it is not one.

    A timestamp without a zone is taken as UTC; a date alone means its midnight UTC.
    """
    match = _ABSOLUTE_RE.match(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, frac, zone = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=timezone.utc,
        )
    except ValueError:
        return None
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        if offset >= timedelta(hours=24):
            return None
        moment -= sign * offset
    seconds = calendar.timegm(moment.utctimetuple())
    nanos = int((frac or "0").ljust(9, "0"))
    return seconds * NS_PER_SECOND + nanos


def parse_since(field: str, value: str, now: int) -> int | None:
    """Lower time bound from ``since``: relative (``now - window``) or absolute; None if empty."""
    if value == "":
        return None
    span = parse_relative(value)
    if span is not None:
        return now - span
    absolute = parse_timestamp(value)
    if absolute is None:
        raise BadRequest(f"invalid {field} '{value}': {TIME_GRAMMAR_HELP}")
    return absolute


def parse_until(value: str, now: int) -> int | None:
    """Upper time bound from ``until``: ``now``/empty mean none; relative means older than the window."""
    if value in ("", "now"):
        return None
    return parse_since("until", value, now)
