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

from collections.abc import Mapping

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


def stray_message(days_after: float, count: int, last_regular: pd.Timestamp) -> str:
    """Why a row after a long quiet spell is refused."""
    rows = "1 row" if count == 1 else f"{count:,} rows"
    return (
        f"dated {days_after:.0f} days after the export's last event before it "
        f"({last_regular:%Y-%m-%d}), with no event of any table in between ({rows} of "
        "the export dated after that gap): most likely a mistyped date; the export's end "
        "is its latest event, so such a row would count every outcome after the real end "
        "as a negative. Fix the date, or pass --snapshot-at with the export's real end"
    )


def flag_stray_latest_events(checks: Mapping[str, TableCheck]) -> None:
    """Flag the events that follow a ``QUIET_SPELL`` of the whole export at its end.

    The events after the earliest gap longer than ``QUIET_SPELL`` among the export's latest
    ``STRAY_SHARE`` of events (every table's event time together; ``_last_regular_event``)
    are flagged in their own tables, so they are refused by a strict load and set aside by
    a lenient one. Rows already flagged for another problem are left out.
    """
    events: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, check in checks.items():
        found = _valid_events(check)
        if found is not None:
            events[name] = found
    if not events:
        return
    cut = _last_regular_event(np.concatenate([times for _, times in events.values()]))
    if cut is None:
        return
    count = sum(int((times > cut).sum()) for _, times in events.values())
    last_regular = pd.Timestamp(cut, unit="us", tz="UTC")
    for name, (positions, times) in events.items():
        stray = times > cut
        if not stray.any():
            continue
        check = checks[name]
        assert check.frame is not None
        days_after = (int(times[stray].min()) - cut) / (DAY // MICROSECOND)
        flag = np.zeros(len(check.frame), dtype=bool)
        flag[positions[stray]] = True
        check.flag(flag, EVENT_TIME_COLUMN[name], stray_message(days_after, count, last_regular))


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


def _last_regular_event(every: np.ndarray) -> int | None:
    """The last event before the earliest quiet spell near the export's end, or None if none
    (every event after that spell is then flagged, however many spells follow).

    Only the latest ``STRAY_SHARE`` of events (at least one) are looked at, so that an
    export whose business paused and then resumed for longer is taken as it is; and a gap
    counts only when it is longer than ``QUIET_SPELL`` and the export's pace over the
    ``PACE_PERIOD`` before it promised more than ``QUIET_EXPECTED_EVENTS`` events in it, so
    that a small export's sparse events are taken as they are.
    """
    tail = max(1, int(len(every) * STRAY_SHARE))
    if len(every) <= tail:
        return None
    latest = np.sort(np.partition(every, len(every) - tail - 1)[-(tail + 1) :])
    gaps = np.diff(latest)
    for position in np.flatnonzero(gaps > QUIET_SPELL // MICROSECOND):  # earliest first
        cut = int(latest[position])
        before = int((every > cut - PACE_PERIOD // MICROSECOND).sum() - (every > cut).sum())
        expected = before / (PACE_PERIOD / DAY) * (int(gaps[position]) / (DAY // MICROSECOND))
        if expected > QUIET_EXPECTED_EVENTS:
            return cut
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
