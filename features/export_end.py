"""Where an export ends, and the two ways the data can hide its real end.

Censoring is decided against the export's end (the snapshot): an example whose horizon
reaches past it is censored, every other one is labelled, a comeback not in the export
counting as none. Left to itself, the snapshot is the latest event time of any table
(``features.loading.latest_timestamp``), and two kinds of data move it past the moment the
outcomes were really seen:

- **a mistyped date**: a handful of rows dated months after everything else (a year typed
  one too high, still before today). They are refused, naming the file, column and row
  (``flag_stray_latest_events``): taken as the end, they would turn every outcome of those
  months into a negative;
- **a stale table**: rejections or opportunities exported weeks before the other tables.
  Rows far too few for their table's pace at the end say so, in a warning naming the table
  and the ``--snapshot-at`` that censors what it cannot show (``stale_outcome_tables``).

Both look only at a snapshot derived from the data: a snapshot the caller chose is theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.coercion import TableCheck
from features.contract import EVENT_TIME_COLUMN
from features.timestamps import to_microseconds

#: The tables whose rows decide labels: a comeback is an opportunity, and a later rejection
#: closes the one before.
OUTCOME_TABLES = ("rejections", "opportunities")
#: A stretch this long with no event in any table, followed by a few events, marks those
#: as mistyped dates rather than as the export's last weeks.
QUIET_SPELL = pd.Timedelta(days=30)
#: At most this share of the export's events may follow such a stretch for them to count as
#: mistyped (a business that resumed after a pause has more).
STRAY_SHARE = 0.01
#: How many rows an outcome table's pace must have promised over the gap between its last
#: row and the export's end for the table to be called stale (rejections and
#: opportunities are a few per lead, spread over many leads: the chance of such a gap by
#: luck is about e^-20).
STALE_EXPECTED_ROWS = 20.0
#: How many events the whole export's pace must have promised over a gap for it to be a
#: quiet spell. Higher than for a table's rows: one lead's events come in runs (a visit
#: opens several pages), so a small export's pace promises more than it keeps.
QUIET_EXPECTED_EVENTS = 100.0
#: The period before a table's last row over which its pace is measured.
PACE_PERIOD = pd.Timedelta(days=365)
DAY = pd.Timedelta(days=1)
MICROSECOND = pd.Timedelta(microseconds=1)
DAY_US = DAY // MICROSECOND


@dataclass(frozen=True)
class EventDays:
    """Event times summed up by UTC day: their count, first and last time per day.

    Enough to find a quiet spell exactly (every gap longer than a day lies between one
    day's last event and the next day's first), in memory that grows with the export's
    span in days rather than with its rows: a batch job's chunks each sum up their own
    events and the job merges them (``merged``) to apply the rule to the whole export.

    Attributes:
        days: the days holding an event (int64 days since the epoch, ascending).
        counts: how many events each day holds.
        firsts: each day's first event time (int64 microseconds).
        lasts: each day's last event time (int64 microseconds).
    """

    days: np.ndarray
    counts: np.ndarray
    firsts: np.ndarray
    lasts: np.ndarray

    @classmethod
    def of(cls, times: np.ndarray) -> EventDays:
        """The summary of ``times`` (int64 microseconds, in any order).

        One pass per field over a day-indexed array (the span in days is bounded by the
        contract's timestamps): no sort, so that a whole export's tens of millions of
        events are summed up in a fraction of a second.
        """
        times = np.asarray(times, dtype=np.int64)
        if not len(times):
            empty = np.empty(0, dtype=np.int64)
            return cls(empty, empty, empty, empty)
        days = times // DAY_US
        first_day = int(days.min())
        index = days - first_day
        counts = np.bincount(index)
        firsts = np.full(len(counts), np.iinfo(np.int64).max)
        np.minimum.at(firsts, index, times)
        lasts = np.full(len(counts), np.iinfo(np.int64).min)
        np.maximum.at(lasts, index, times)
        held = np.flatnonzero(counts)
        return cls(held + first_day, counts[held], firsts[held], lasts[held])

    @classmethod
    def merged(cls, parts: Iterable[EventDays]) -> EventDays:
        """One summary of the events of every part."""
        parts = list(parts)
        if not parts:
            return cls.of(np.empty(0, dtype=np.int64))
        days = np.concatenate([part.days for part in parts])
        unique, inverse = np.unique(days, return_inverse=True)
        counts = np.zeros(len(unique), dtype=np.int64)
        np.add.at(counts, inverse, np.concatenate([part.counts for part in parts]))
        firsts = np.full(len(unique), np.iinfo(np.int64).max)
        np.minimum.at(firsts, inverse, np.concatenate([part.firsts for part in parts]))
        lasts = np.full(len(unique), np.iinfo(np.int64).min)
        np.maximum.at(lasts, inverse, np.concatenate([part.lasts for part in parts]))
        return cls(unique, counts, firsts, lasts)

    def to_lists(self) -> dict[str, list[int]]:
        """The summary as plain lists (JSON, Arrow)."""
        return {name: [int(v) for v in getattr(self, name)] for name in _EVENT_DAYS_FIELDS}

    @classmethod
    def from_lists(cls, lists: Mapping[str, Sequence[int]]) -> EventDays:
        """The summary ``to_lists`` wrote."""
        arrays = (np.asarray(lists[name], dtype=np.int64) for name in _EVENT_DAYS_FIELDS)
        return cls(*arrays)


_EVENT_DAYS_FIELDS = ("days", "counts", "firsts", "lasts")


@dataclass(frozen=True)
class StrayCut:
    """Where an export's regular events end and its mistyped dates begin.

    Attributes:
        last_regular_us: the last event before the quiet spell (int64 microseconds); every
            event after it is a stray.
        next_us: the first event after the spell.
        count: how many events of the export follow the spell.
    """

    last_regular_us: int
    next_us: int
    count: int

    def message(self) -> str:
        """Why a row after the quiet spell is refused."""
        days_after = (self.next_us - self.last_regular_us) / DAY_US
        last_regular = pd.Timestamp(self.last_regular_us, unit="us", tz="UTC")
        rows = "1 row" if self.count == 1 else f"{self.count:,} rows"
        return (
            f"dated after a gap of {days_after:.0f} days with no event of any table, after "
            f"the export's last regular event ({last_regular:%Y-%m-%d}) ({rows} of the "
            "export dated after that gap): most likely a mistyped date; the export's end is "
            "its latest event, so such a row would count every outcome after the real end "
            "as a negative. Fix the date, or pass --snapshot-at with the export's real end"
        )


def flag_stray_latest_events(
    checks: Mapping[str, TableCheck],
    events: Mapping[str, tuple[np.ndarray, np.ndarray]],
    cut: StrayCut,
) -> None:
    """Flag the events after ``cut`` in their own tables, so they are refused by a strict
    load and set aside by a lenient one.

    Args:
        checks: the tables' checks.
        events: each table's rows with an event time and no problem so far, and those times
            (``valid_events``): rows already flagged for another problem are left out.
        cut: the export's stray events (``stray_cut`` of these events, or the whole
            export's for a part of it).
    """
    for name, (positions, times) in events.items():
        stray = times > cut.last_regular_us
        if not stray.any():
            continue
        check = checks[name]
        assert check.frame is not None
        flag = np.zeros(len(check.frame), dtype=bool)
        flag[positions[stray]] = True
        check.flag(flag, EVENT_TIME_COLUMN[name], cut.message())


def valid_events(checks: Mapping[str, TableCheck]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each table's rows with an event time and no problem so far (before rows are checked
    against their lead), and those times: the events the quiet-spell rule reads."""
    events = {}
    for name, check in checks.items():
        found = _valid_events(check)
        if found is not None:
            events[name] = found
    return events


def event_days_of(events: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> EventDays:
    """The summary of ``events`` (``valid_events``), every table together."""
    times = [times for _, times in events.values()]
    return EventDays.of(np.concatenate(times) if times else np.empty(0, dtype=np.int64))


def _valid_events(check: TableCheck) -> tuple[np.ndarray, np.ndarray] | None:
    """The row positions of ``check`` with an event time and no problem so far, and those
    times (int64 microseconds); None for a table without event times."""
    column = EVENT_TIME_COLUMN.get(check.table.name)
    if column is None or column not in check.typed or check.frame is None:
        return None
    times = check.typed[column]
    present = times.notna().to_numpy()
    if check.bad_reasons:
        present[list(check.bad_reasons)] = False
    positions = np.flatnonzero(present)
    return positions, to_microseconds(times)[positions]


def stray_cut(events: EventDays) -> StrayCut | None:
    """The events after the earliest quiet spell near the export's end, or None if none
    (every event after that spell is a stray, however many spells follow).

    Only the latest ``STRAY_SHARE`` of events (at least one) are looked at, so that an
    export whose business paused and then resumed for longer is taken as it is; and a gap
    counts only when it is longer than ``QUIET_SPELL`` and the export's pace over the
    ``PACE_PERIOD`` up to the day of the gap's start promised more than
    ``QUIET_EXPECTED_EVENTS`` events in it, so that a small export's sparse events are taken
    as they are.
    """
    total = int(events.counts.sum())
    tail = max(1, int(total * STRAY_SHARE))
    if total <= tail:
        return None
    # The day holding the first of the latest ``tail + 1`` events; gaps within a day are
    # shorter than a quiet spell, so only the gaps between days from it on count.
    first_day = int(np.searchsorted(np.cumsum(events.counts), total - tail))
    gaps = events.firsts[first_day + 1 :] - events.lasts[first_day:-1]
    for offset in np.flatnonzero(gaps > QUIET_SPELL // MICROSECOND):  # earliest first
        day = first_day + int(offset)
        pace_days = PACE_PERIOD // DAY
        in_pace = events.days[: day + 1] > events.days[day] - pace_days
        before = int(events.counts[: day + 1][in_pace].sum())
        expected = before / pace_days * (int(gaps[offset]) / DAY_US)
        if expected > QUIET_EXPECTED_EVENTS:
            after = int(events.counts[day + 1 :].sum())
            return StrayCut(int(events.lasts[day]), int(events.firsts[day + 1]), after)
    return None


def table_spans(tables: Mapping[str, pd.DataFrame]) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """Each table's earliest and latest event time (``EVENT_TIME_COLUMN``; missing times
    skipped), for the tables that hold one, in contract order."""
    spans: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = {}
    for name, column in EVENT_TIME_COLUMN.items():
        frame = tables.get(name)
        if frame is None or column not in frame:
            continue
        first, last = frame[column].min(), frame[column].max()
        if pd.notna(last):
            spans[name] = (first, last)
    return spans


def table_ends(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.Timestamp]:
    """Each table's latest event time (``table_spans``), for the tables that hold one."""
    return {name: last for name, (_, last) in table_spans(tables).items()}


def stale_outcome_tables(tables: Mapping[str, pd.DataFrame], snapshot: pd.Timestamp) -> list[str]:
    """A warning for each outcome table whose rows stop well before ``snapshot``.

    A table is stale when, at the pace of its last ``PACE_PERIOD``, the gap between its last
    row and the snapshot should have held more than ``STALE_EXPECTED_ROWS`` rows. A small
    export's sparse opportunities are not: at a few a month, weeks without one are normal.
    """
    ends = table_ends(tables)
    warnings = []
    for name in OUTCOME_TABLES:
        if name not in ends:
            continue
        end, column = ends[name], EVENT_TIME_COLUMN[name]
        pace = int((tables[name][column] > end - PACE_PERIOD).sum()) / (PACE_PERIOD / DAY)
        expected = pace * ((snapshot - end) / DAY)
        if expected > STALE_EXPECTED_ROWS:
            warnings.append(_stale_warning(name, column, end, snapshot, expected))
    return warnings


def _stale_warning(
    name: str, column: str, end: pd.Timestamp, snapshot: pd.Timestamp, expected: float
) -> str:
    days = (snapshot - end) / DAY
    return (
        f"{name}: its latest {column} ({end.isoformat()}) is {days:.0f} days before the "
        f"export's end ({snapshot.isoformat()}), where its pace over the year before "
        f"promises about {expected:.0f} rows: was it exported before the other tables? The "
        "outcomes it does not show would count as negatives; if so, pass --snapshot-at "
        f"{end.isoformat()} to censor what it cannot show"
    )
