"""ISO 8601 timestamps: one parser for files and requests, one integer time base.

The contract's rules: a timestamp without an offset is UTC; an offset is converted to UTC.
Files (pandas) and API requests (pydantic) both check text against ``ISO_TIMESTAMP`` so
they accept exactly the same strings, and every engine computation runs on int64
microseconds since the epoch (UTC).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# ASCII digits only: Python's ``\d`` would take any script's digits.
_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_FRACTION = r"[0-9]{1,9}"
_OFFSET = r"Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9]"


def _time(fraction: str) -> str:
    return rf"T[0-9]{{2}}:[0-9]{{2}}(?::[0-9]{{2}}(?:\.{fraction})?)?"


#: ``YYYY-MM-DD``, optionally ``THH:MM[:SS[.fraction]]``, optionally ``Z`` or ``±HH[:]MM``
#: (offsets up to 23:59).
ISO_TIMESTAMP = re.compile(
    rf"^(?P<date>{_DATE})(?:{_time(f'(?P<fraction>{_FRACTION})')}(?P<offset>{_OFFSET})?)?$"
)
#: The same form without group names, for pydantic's core and JSON Schema.
ISO_TIMESTAMP_PATTERN = rf"^{_DATE}(?:{_time(_FRACTION)}(?:{_OFFSET})?)?$"
MISSING_TIME = np.iinfo(np.int64).min
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
TIMESTAMP_DTYPE = "datetime64[us, UTC]"
#: The span of timestamps the file loader can parse: pandas' nanosecond range, to the
#: microsecond (``EARLIEST`` included, ``LATEST`` not).
EARLIEST = pd.Timestamp.min.ceil("us").tz_localize(UTC).to_pydatetime()
LATEST = pd.Timestamp.max.floor("us").tz_localize(UTC).to_pydatetime() + ONE_MICROSECOND
SPAN = f"from {EARLIEST.isoformat()} to before {LATEST.isoformat()}"
#: How far after this machine's clock an event may be dated: a sender's clock running
#: ahead, a webhook fired as the rep rejects. An event dated further ahead has not happened
#: yet (a mistyped year, most often) and is refused: the snapshot is the latest event time,
#: and one such row would turn every unknown outcome into a negative.
CLOCK_SKEW_ALLOWED = timedelta(minutes=5)
#: ``CLOCK_SKEW_ALLOWED`` in words, for messages and generated docs.
CLOCK_SKEW_TEXT = f"{CLOCK_SKEW_ALLOWED // timedelta(minutes=1)} minutes"


def latest_believable_time(clock: pd.Timestamp | None = None) -> pd.Timestamp:
    """The latest moment an event may be dated: ``clock`` (default: this machine's clock
    now) plus the skew."""
    return (pd.Timestamp.now(tz=UTC) if clock is None else clock) + CLOCK_SKEW_ALLOWED


def is_iso_timestamp(text: str) -> bool:
    """Whether ``text`` is an ISO 8601 date or timestamp in the contract's form (all of it:
    not even a trailing newline)."""
    return ISO_TIMESTAMP.fullmatch(text) is not None


def explicit_utc(text: str) -> str | None:
    """A contract timestamp made explicit for pandas: ``Z`` when it names no offset (no
    offset is UTC), midnight for a date alone, and its fraction cut to microseconds (the
    caller rounds up what was cut, ``beyond_microseconds``); None when ``text`` is not in
    the contract's form."""
    match = ISO_TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    fraction = match["fraction"]
    if fraction is not None and len(fraction) > 6:
        end = match.end("fraction")
        text = text[: end - len(fraction) + 6] + text[end:]
    if match["offset"]:
        return text
    if len(text) == len(match["date"]):
        return text + "T00:00:00Z"
    return text + "Z"


#: ``YYYY-MM-DDTHH:MM:SS.fffffff``: no shorter timestamp has a seventh fraction digit.
_SHORTEST_WITH_NANOSECONDS = 27
#: A fraction with a non-zero digit past the sixth: the one rule, for Python and for Arrow.
_BEYOND_MICROSECONDS = r"\.[0-9]{6}[0-9]*[1-9]"
_BEYOND_MICROSECONDS_PATTERN = re.compile(_BEYOND_MICROSECONDS)


def beyond_microseconds(text: str) -> bool:
    """Whether a contract timestamp's fraction has a non-zero digit past the microseconds.

    Such a moment is rounded up to the next microsecond, never cut: an event a fraction of
    a microsecond after a scoring moment must stay after it, or it would count as known.
    ``text`` is already in the contract's form, so its one ``.`` starts the fraction.
    """
    if len(text) < _SHORTEST_WITH_NANOSECONDS:
        return False  # every second- and millisecond-precision form, without a regex
    return _BEYOND_MICROSECONDS_PATTERN.search(text) is not None


def parse_timestamps(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Parse ISO 8601 strings to UTC timestamps, each distinct string once.

    Every string is made explicit about its offset before parsing (``explicit_utc``), so a
    value without an offset never borrows the offset of a neighbouring row.

    Returns:
        The timestamps (``datetime64[us, UTC]``, NaT where missing or bad) and a boolean
        array marking present values that are not ISO 8601.
    """
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    strings = list(map(str, uniques))
    explicit = list(map(explicit_utc, strings))
    valid = np.array([e is not None for e in explicit] + [True], dtype=bool)
    round_up = pc.match_substring_regex(pa.array(strings, pa.string()), _BEYOND_MICROSECONDS)
    parsed = pd.to_datetime(
        pd.Series(explicit, dtype=object), utc=True, format="ISO8601", errors="coerce"
    )
    moments = _naive_microseconds(parsed).copy()
    moments[round_up.to_numpy(zero_copy_only=False)] += np.timedelta64(1, "us")
    _settle_edges(strings, valid[:-1], moments)
    values = np.append(moments, np.datetime64("NaT", "us"))[codes]
    bad = (codes >= 0) & (~valid[codes] | np.isnat(values))
    return pd.Series(values, index=text.index).dt.tz_localize("UTC"), bad


_EDGE = np.timedelta64(1, "D")  # more than any offset (23:59)


def _settle_edges(strings: list[str], valid: np.ndarray, moments: np.ndarray) -> None:
    """Parse again, as requests do (``iso_moment``), every valid string pandas refused or
    put within a day of the span's ends.

    pandas checks its range on the local time before applying the offset (so
    ``1677-09-20T19:00:00-05:30``, inside the span in UTC, fails) and in nanoseconds; the
    few strings near the ends are settled by the same code as requests, in place.
    """
    earliest = np.datetime64(EARLIEST.replace(tzinfo=None), "us")
    latest = np.datetime64(LATEST.replace(tzinfo=None), "us")
    near = (moments < earliest + _EDGE) | (moments >= latest - _EDGE)
    for position in np.flatnonzero(valid & (np.isnat(moments) | near)):
        try:
            moment = iso_moment(strings[position])
        except ValueError:
            moments[position] = np.datetime64("NaT", "us")
        else:
            moments[position] = np.datetime64(moment.replace(tzinfo=None), "us")


def outside_span(moments: pd.Series) -> np.ndarray:
    """Which present UTC timestamps lie outside ``EARLIEST``..``LATEST`` (NaT: not outside)."""
    outside = (moments < EARLIEST) | (moments >= LATEST)
    return outside.to_numpy(dtype=bool) & moments.notna().to_numpy()


def to_microseconds(series: pd.Series) -> np.ndarray:
    """A UTC timestamp column as int64 microseconds; missing values become ``MISSING_TIME``."""
    return _naive_microseconds(series).view("int64")


def _naive_microseconds(series: pd.Series) -> np.ndarray:
    """A UTC timestamp column as naive ``datetime64[us]`` (NaT kept).

    ``as_unit`` converts exactly to the ends of pandas' range, where
    ``to_numpy(dtype="datetime64[us]")`` of a nanosecond column wraps around.
    """
    if series.dt.tz is not None:
        series = series.dt.tz_convert(None)
    return series.dt.as_unit("us").to_numpy(dtype="datetime64[us]")


def microseconds(value: datetime | pd.Timestamp | None) -> int:
    """One UTC moment as integer microseconds since the epoch (``MISSING_TIME`` for None)."""
    if value is None:
        return int(MISSING_TIME)
    if isinstance(value, pd.Timestamp):
        value = value.tz_localize("UTC") if value.tzinfo is None else value
        return int((value - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us"))
    return (value - EPOCH) // ONE_MICROSECOND


def utc_microseconds(values: Sequence[datetime]) -> np.ndarray:
    """Aware datetimes as int64 microseconds (exact integer arithmetic, no float)."""
    return np.fromiter(
        ((value - EPOCH) // ONE_MICROSECOND for value in values), np.int64, len(values)
    )


NOT_ISO = (
    "must be an ISO 8601 date or timestamp string (YYYY-MM-DD, optionally "
    "THH:MM[:SS[.fraction]], optionally Z or an offset ±HH:MM)"
)

_HOURS_ONLY_OFFSET = re.compile(r"T[0-9:.]+[+-][0-9]{2}$")
_DECIMAL_COMMA = re.compile(r"(T[0-9]{2}:[0-9]{2}:[0-9]{2}),([0-9])")
_LONG_FRACTION = re.compile(r"(\.[0-9]{9})[0-9]+")
#: Near misses of the contract's form, each with the repair that would make it one.
_NEAR_MISSES: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("a timestamp with a lower-case t or z", str.upper),
    ("a timestamp with a space between date and time", lambda t: t.replace(" ", "T", 1)),
    (
        "a timestamp whose offset has hours but no minutes",
        lambda t: t + ":00" if _HOURS_ONLY_OFFSET.search(t) else t,
    ),
    ("a timestamp with a decimal comma in its seconds", lambda t: _DECIMAL_COMMA.sub(r"\1.\2", t)),
    (
        "a timestamp with more than 9 digits after the seconds",
        lambda t: _LONG_FRACTION.sub(r"\1", t),
    ),
)


def near_miss(text: str) -> str | None:
    """What keeps ``text`` from being a contract timestamp, in words, when one repair would
    make it one (a lower-case ``z``, an hour-only offset, a decimal comma, ...) or when it
    has the form but names no real moment (February 30, hour 25). Never quotes ``text``.
    """
    if is_iso_timestamp(text):
        try:
            datetime.fromisoformat(text)
        except ValueError:
            return "a date or time that does not exist, such as February 30 or hour 24"
        return None
    for kind, repair in _NEAR_MISSES:
        if is_iso_timestamp(repair(text)):
            return kind
    return None


def parse_timestamp(value: object) -> datetime:
    """One request timestamp as an aware UTC ``datetime`` (the contract's rules, one call).

    Accepts a string in the contract's ISO 8601 form (no offset is UTC; a date alone is its
    midnight UTC) or a ``datetime`` (naive is UTC); a fraction past microseconds is rounded
    up to the next microsecond (``beyond_microseconds``).

    Raises:
        ValueError: the value is not such a string, or lies outside ``EARLIEST``..``LATEST``.
    """
    if isinstance(value, datetime):
        return utc_moment(value)
    if isinstance(value, str) and is_iso_timestamp(value):
        return iso_moment(value)
    raise ValueError(NOT_ISO)


def iso_moment(text: str) -> datetime:
    """A string already matched against ``ISO_TIMESTAMP``, as an aware UTC ``datetime``.

    Raises:
        ValueError: not a real date or time (``2025-13-45``), or outside the span.
    """
    try:
        moment = datetime.fromisoformat(text)  # cuts a fraction to microseconds
    except ValueError:
        raise ValueError(NOT_ISO) from None
    # ``beyond_microseconds`` inline: a request carries dozens of timestamps.
    if len(text) >= _SHORTEST_WITH_NANOSECONDS and _BEYOND_MICROSECONDS_PATTERN.search(text):
        try:
            moment += ONE_MICROSECOND
        except OverflowError:
            raise ValueError(f"must be {SPAN}") from None
    return utc_moment(moment)


def utc_moment(moment: datetime) -> datetime:
    """``moment`` in UTC (naive is UTC).

    Raises:
        ValueError: outside ``EARLIEST``..``LATEST``.
    """
    zone = moment.tzinfo
    if zone is not UTC:  # ``fromisoformat`` gives UTC itself for ``Z`` and ``+00:00``
        try:
            moment = moment.replace(tzinfo=UTC) if zone is None else moment.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"must be {SPAN}") from None
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"must be {SPAN}")
    return moment


_MICROSECONDS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}


def microseconds_up(values: np.ndarray, unit: str) -> np.ndarray:
    """int64 moments counted in ``unit`` (``s``, ``ms``, ``us``, ``ns``; no missing value)
    as int64 microseconds, a sub-microsecond rest rounded up as a text fraction is."""
    if unit == "ns":
        return -((-values) // 1000)
    factor = _MICROSECONDS_PER_UNIT[unit]
    bound = np.iinfo(np.int64).max // factor  # beyond it the product would wrap around;
    return np.clip(values, -bound, bound) * factor  # clipped, it lies outside the span


def typed_moments(moments: pd.Series) -> pd.Series:
    """A typed timestamp column (a Parquet file's) as UTC microseconds (``TIMESTAMP_DTYPE``),
    naive values read as UTC and a nanosecond rest rounded up, as ``parse_timestamps`` does."""
    utc = moments.dt.tz_localize("UTC") if moments.dt.tz is None else moments.dt.tz_convert("UTC")
    unit = utc.dt.unit
    if unit == "us":
        return utc
    counts = utc.dt.tz_convert(None).to_numpy().view("int64")
    present = counts != MISSING_TIME  # NaT
    micros = microseconds_up(np.where(present, counts, 0), unit)
    values = np.where(present, micros, MISSING_TIME).view("datetime64[us]")
    return pd.Series(values, index=moments.index).dt.tz_localize("UTC")


def as_utc(moment: datetime | pd.Timestamp | None) -> pd.Timestamp | None:
    """A moment (a command-line option, a caller's snapshot) as a UTC timestamp; no offset
    means UTC, as in the files."""
    if moment is None:
        return None
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def from_microseconds(values: np.ndarray) -> pd.Series:
    """int64 microseconds back to UTC timestamps (``MISSING_TIME`` becomes NaT)."""
    moments = np.asarray(values, dtype=np.int64).view("datetime64[us]")
    return pd.Series(pd.to_datetime(moments, utc=True))
