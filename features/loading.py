"""Read an export directory into typed, validated tables.

The export is one directory with one file per contract table (``.parquet`` or ``.csv``,
found and read by ``features.table_files``). Every problem is collected before anything is
reported, each naming the file, the column, the first offending row and its value. In
lenient mode (used by the batch scoring job) rows with row-level problems are set aside
with their reason instead of failing the load.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.coercion import TableCheck, check_table
from features.contract import (
    EVENT_TIME_COLUMN,
    LEAD_CHILD_TABLES,
    REJECTED_BEFORE_CREATED,
    TABLES,
    TABLES_BY_NAME,
    Table,
)
from features.export_end import (
    EventDays,
    StrayCut,
    event_days_of,
    flag_stray_latest_events,
    stale_outcome_tables,
    table_spans,
    valid_events,
)
from features.export_end import stray_cut as find_stray_cut
from features.problems import ContractError, Problem
from features.row_notes import NoteKind, RowNote
from features.table_files import locate_table_files, read_table_file
from features.text import arrow_loose_ids, text_of
from features.timestamps import MISSING_TIME, as_utc, latest_believable_time, to_microseconds

logger = logging.getLogger(__name__)


@dataclass
class RejectedRow:
    """A row set aside by a lenient load, with why.

    Attributes:
        table: its table.
        row: its row in the table, from 1.
        key: its primary key (``lead_id`` for a table without one) as text; missing when
            the row's values may be shifted (its key's column or two or more columns are
            among its problems) or the key holds an ``@``, as it may then hold anything.
        reason: the first problem found, naming the column and the rule.
        columns: every column among the row's problems.
    """

    table: str
    row: int
    key: str | None
    reason: str
    columns: frozenset[str] = frozenset()


@dataclass
class Export:
    """The five contract tables, typed, with timestamps in UTC.

    Attributes:
        tables: table name to DataFrame; optional tables absent from the export are empty.
        snapshot_at: the export's end: the latest event time found in any table.
        files: table name to the file it was read from (absent tables are missing).
        warnings: non-fatal notes, such as unknown activity types mapped to ``other``.
        rejected_rows: rows set aside by a lenient load.
        event_days: the day summary of the event times the quiet-spell rule read (rows
            with no problem of their own; ``features.export_end``), for a batch job to merge
            over its chunks.
        row_notes: the warnings about some rows of a table (their texts are in
            ``warnings`` too), as counts a batch job adds up over its chunks.
    """

    tables: dict[str, pd.DataFrame]
    snapshot_at: pd.Timestamp
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    rejected_rows: list[RejectedRow] = field(default_factory=list)
    event_days: EventDays | None = None
    row_notes: list[RowNote] = field(default_factory=list)

    @property
    def leads(self) -> pd.DataFrame:
        """The leads table."""
        return self.tables["leads"]

    @property
    def activities(self) -> pd.DataFrame:
        """The activities table."""
        return self.tables["activities"]

    @property
    def rejections(self) -> pd.DataFrame:
        """The rejections table."""
        return self.tables["rejections"]

    @property
    def opportunities(self) -> pd.DataFrame:
        """The opportunities table (empty when the export has none)."""
        return self.tables["opportunities"]

    @property
    def consent(self) -> pd.DataFrame:
        """The consent table (empty when the export has none)."""
        return self.tables["consent"]


#: Why a snapshot ahead of this machine's clock is refused.
SNAPSHOT_AHEAD = (
    "is in the future: outcomes that nobody can have seen yet would count as negatives; "
    "the export's end is at the latest now"
)
#: How long after an export's latest event a chosen snapshot may be: an export taken on a
#: quiet weekend ends a few days before it was taken, but an export that ends weeks before
#: the snapshot cannot show the comebacks of those weeks.
SNAPSHOT_AFTER_DATA_ALLOWED = pd.Timedelta(days=7)


def load_export(
    directory: str | Path,
    *,
    lenient: bool = False,
    snapshot_at: pd.Timestamp | None = None,
) -> Export:
    """Load and validate an export directory.

    Args:
        directory: the directory holding ``leads``, ``activities``, ``rejections`` and
            optionally ``opportunities`` and ``consent`` as ``.parquet`` or ``.csv``.
        lenient: set rows with row-level problems aside (see ``Export.rejected_rows``)
            instead of failing; structural problems (a missing file or column, an
            unreadable file) still fail.
        snapshot_at: the export's end; defaults to the latest event time in the data. A
            moment ahead of this machine's clock is refused, as is a row dated there
            (``features.timestamps.CLOCK_SKEW_ALLOWED``), and so is a moment more than
            ``SNAPSHOT_AFTER_DATA_ALLOWED`` after the latest event (outcomes the export
            cannot show would count as negatives).

    Returns:
        The typed export.

    Raises:
        ContractError: listing every problem found.
    """
    root = Path(directory)
    snapshot_at = as_utc(snapshot_at)
    if snapshot_at is not None and snapshot_at > latest_believable_time():
        message = f"{snapshot_at.isoformat()} {SNAPSHOT_AHEAD}"
        raise ContractError([Problem("snapshot_at", message)])
    if not root.is_dir():
        raise ContractError([Problem(str(root), not_a_directory(root))])
    files, problems, absent = locate_table_files(root)
    raw = _read_files(files, problems)
    if problems:
        raise ContractError(problems)
    export = build_export(raw, files=files, lenient=lenient, snapshot_at=snapshot_at)
    if snapshot_at is not None:
        _check_snapshot_within_data(snapshot_at, latest_timestamp(export.tables))
    for warning in absent:
        logger.warning(warning)
        export.warnings.append(warning)
    return export


def _check_snapshot_within_data(snapshot_at: pd.Timestamp, latest_event: pd.Timestamp) -> None:
    """Refuse a snapshot long after the export's latest event.

    The rows after the export's end are not in it, so a rejection that came back between
    that end and the snapshot would look as if it never did: its outcome would count as a
    negative, and its lead as open for more re-scoring.

    Raises:
        ContractError: naming the snapshot, the latest event and the gap.
    """
    if snapshot_at <= latest_event + SNAPSHOT_AFTER_DATA_ALLOWED:
        return
    gap = (snapshot_at - latest_event) / pd.Timedelta(days=1)
    message = (
        f"{snapshot_at.isoformat()} is {gap:.1f} days after the export's latest event "
        f"({latest_event.isoformat()}): comebacks after that moment are not in the export, "
        "so rejections that came back would count as negatives; choose a snapshot at most "
        f"{SNAPSHOT_AFTER_DATA_ALLOWED.days} days after it, or leave it out to use it"
    )
    raise ContractError([Problem("snapshot_at", message)])


def not_a_directory(path: Path) -> str:
    """Why ``path`` is not an export directory."""
    if path.is_file():
        return "is a file, not an export directory (pass the directory that holds the tables)"
    return "export directory does not exist"


def build_export(
    raw: Mapping[str, pd.DataFrame],
    *,
    files: Mapping[str, Path] | None = None,
    lenient: bool = False,
    snapshot_at: pd.Timestamp | None = None,
    stray_cut: StrayCut | None = None,
    clock: pd.Timestamp | None = None,
    log_warnings: bool = True,
) -> Export:
    """Validate and type raw tables (strings or native types) into an ``Export``.

    Args:
        raw: table name to DataFrame as read; optional tables may be missing.
        files: where each table came from, for messages.
        lenient: set bad rows aside instead of failing (see ``load_export``).
        snapshot_at: the export's end; defaults to the latest event time in the data,
            once rows dated after a long quiet spell of the whole export are refused and
            with a warning for an outcome table that stops long before the others
            (``features.export_end``).
        stray_cut: the stray events of the export these tables are part of (a batch job's
            chunk): rows dated after its regular end are flagged as mistyped dates, as a
            load of the whole export flags them.
        clock: the moment no event may be dated after (``CLOCK_SKEW_ALLOWED`` aside);
            default: this machine's clock now. A batch job fixes it at its first start,
            so a resumed job sets aside the same rows.
        log_warnings: log each warning (``Export.warnings``); a batch job's chunk does not,
            as the job gives the export's warnings once, added up over its chunks.

    Raises:
        ContractError: listing every problem found.
    """
    file_names = {name: str(path) for name, path in (files or {}).items()}
    checks = {
        table.name: check_table(
            table, raw.get(table.name), file_names.get(table.name, table.name), clock
        )
        for table in TABLES
    }
    events = valid_events(checks)
    event_days = event_days_of(events)
    if snapshot_at is None or stray_cut is not None:  # no mistyped date may set the end
        cut = stray_cut if stray_cut is not None else find_stray_cut(event_days)
        if cut is not None:
            flag_stray_latest_events(checks, events, cut)
    _check_references(checks, lenient)
    _check_rejected_after_creation(checks)
    _note_same_moment_rejections(checks["rejections"])
    _note_closed_before_created(checks["opportunities"])
    problems = [p for check in checks.values() for p in check.problems]
    structural = [p for check in checks.values() for p in check.structural]
    row_notes = [note for check in checks.values() for note in check.notes]
    warnings = [note.text() for note in row_notes]
    if structural or (problems and not lenient):
        for warning in warnings if log_warnings else ():  # a note may explain a problem
            logger.warning(warning)
        raise ContractError(structural + problems, notes=warnings)
    rejected = [row for check in checks.values() for row in _rejected_rows(check)]
    tables = {name: check.clean_frame() for name, check in checks.items()}
    snapshot = snapshot_at
    if snapshot is None:  # a snapshot the caller chose needs no note on later closes
        snapshot = latest_timestamp(tables)
        warnings += stale_outcome_tables(tables, snapshot) + _closes_after(tables, snapshot)
        warnings += _settled_without_close(tables)
    for warning in warnings if log_warnings else ():
        logger.warning(warning)
    return Export(
        tables=tables,
        snapshot_at=snapshot,
        files=dict(files or {}),
        warnings=warnings,
        rejected_rows=rejected,
        event_days=event_days,
        row_notes=row_notes,
    )


def latest_timestamp(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    """The latest event time of any table (the snapshot time).

    Only each table's event time (``EVENT_TIME_COLUMN``) marks the export's end: an
    opportunity's ``closed_at`` may be a planned close date still ahead (CRMs keep one on
    open deals), and taking it would move the snapshot into the future, turning outcomes
    nobody has seen yet into negatives.
    """
    return event_time_range(tables)[1]


#: Why an export with no event time has no end to take as its snapshot.
NO_EVENT_TIME = (
    "no row of the export holds an event time ("
    + ", ".join(f"{table}.{column}" for table, column in EVENT_TIME_COLUMN.items())
    + "), so there is no export end to take as the snapshot; pass --snapshot-at"
)


def event_time_range(tables: Mapping[str, pd.DataFrame]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The earliest and the latest event time (``EVENT_TIME_COLUMN``) of any table.

    Raises:
        ContractError: no table holds an event time.
    """
    present = list(table_spans(tables).values())
    if not present:
        raise ContractError([Problem("export", NO_EVENT_TIME)])
    return min(first for first, _ in present), max(last for _, last in present)


def _closes_after(tables: Mapping[str, pd.DataFrame], snapshot: pd.Timestamp) -> list[str]:
    """A note when opportunities close after the derived snapshot (no feature sees that)."""
    opportunities = tables.get("opportunities")
    if opportunities is None or "closed_at" not in opportunities:
        return []
    later = opportunities["closed_at"] > snapshot
    if not later.any():
        return []
    return [
        f"opportunities: {int(later.sum())} rows close after the snapshot "
        f"({snapshot.isoformat()}), latest {opportunities['closed_at'].max().isoformat()}; "
        "the snapshot is the latest event, and a close after it counts as not yet happened"
    ]


def _settled_without_close(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """A note when won or lost opportunities have no ``closed_at``: nothing settles them."""
    opportunities = tables.get("opportunities")
    if opportunities is None or opportunities.empty or "closed_at" not in opportunities:
        return []
    settled = opportunities["status"].isin(["won", "lost"]) & opportunities["closed_at"].isna()
    if not settled.any():
        return []
    return [
        f"opportunities: {int(settled.sum())} won or lost rows have no closed_at; with no "
        "close date a deal never settles: a won one never counts as won (target: won) and "
        "each counts as open in the features; fill closed_at with the close date"
    ]


def _read_files(files: Mapping[str, Path], problems: list[Problem]) -> dict[str, pd.DataFrame]:
    raw: dict[str, pd.DataFrame] = {}
    for name, path in files.items():
        try:
            raw[name] = read_table_file(path)
        except ContractError as error:
            problems.extend(error.problems)
    return raw


def _check_references(checks: Mapping[str, TableCheck], lenient: bool) -> None:
    """Flag child rows whose lead is unknown or, in a lenient load, was set aside.

    Ids are compared as text (``features.text``), so a lead whose id a Parquet file holds
    as a number is found from a CSV's text of it, and the other way round.
    """
    leads = checks["leads"]
    if leads.frame is None or "lead_id" not in leads.frame:
        return
    lead_ids = leads.typed["lead_id"]
    known = pd.Index(lead_ids.dropna().unique())
    set_aside = np.zeros(len(lead_ids), dtype=bool)
    set_aside[list(leads.bad_reasons)] = True
    dropped = pd.Index(lead_ids[set_aside].dropna().unique())
    for name in LEAD_CHILD_TABLES:
        child = checks[name]
        if child.frame is None or "lead_id" not in child.frame or child.frame.empty:
            continue
        child_leads = child.typed["lead_id"]
        present = child_leads.notna().to_numpy()
        unknown = present & (positions_in(known, child_leads) < 0)
        spaced = _spaced_leads(known, child_leads, unknown)
        child.flag(unknown & ~spaced, "lead_id", "points to a lead_id that is not in leads")
        child.flag(spaced, "lead_id", SPACED_LEAD_ID)
        if lenient and len(dropped):
            child.flag(
                present & (positions_in(dropped, child_leads) >= 0),
                "lead_id",
                LEAD_SET_ASIDE,
            )


def _check_rejected_after_creation(checks: Mapping[str, TableCheck]) -> None:
    """Flag rejections dated before their lead's ``created_at`` (``REJECTED_BEFORE_CREATED``;
    a lead known by its id, its creation time valid, the first row of a repeated id)."""
    leads, rejections = checks["leads"], checks["rejections"]
    if leads.frame is None or rejections.frame is None or rejections.frame.empty:
        return
    lead_ids = leads.typed["lead_id"]
    first = (lead_ids.notna() & ~lead_ids.duplicated()).to_numpy()
    created = to_microseconds(leads.typed["created_at"])[first]
    position = positions_in(pd.Index(lead_ids[first]), rejections.typed["lead_id"])
    known = position >= 0
    lead_created = np.where(known, created[np.maximum(position, 0)], MISSING_TIME)
    rejected = to_microseconds(rejections.typed["rejected_at"])
    before = known & (lead_created != MISSING_TIME) & (rejected != MISSING_TIME)
    before &= rejected < lead_created
    rejections.flag(before, "rejected_at", REJECTED_BEFORE_CREATED)


def _note_same_moment_rejections(rejections: TableCheck) -> None:
    """Note the valid rejections that share their lead and their moment with another: the
    contract calls a rejection open when no later one exists, which leaves such a tie
    undecided; the history orders it by ``rejection_id`` (``RowNote.text`` says how)."""
    if rejections.frame is None or rejections.frame.empty:
        return
    keys = pd.DataFrame(
        {"lead": rejections.typed["lead_id"], "at": rejections.typed["rejected_at"]}
    )
    valid = keys.notna().all(axis=1).to_numpy() & _without_problems(rejections)
    tied = np.zeros(len(keys), dtype=bool)
    tied[valid] = keys[valid].duplicated(keep=False).to_numpy()
    rejections.note(NoteKind.SAME_MOMENT_REJECTIONS, tied)


def _note_closed_before_created(opportunities: TableCheck) -> None:
    """Note the valid opportunities whose ``closed_at`` comes before their ``created_at``
    (the history reads each as closed at its creation)."""
    if opportunities.frame is None or opportunities.frame.empty:
        return
    created = to_microseconds(opportunities.typed["created_at"])
    closed = to_microseconds(opportunities.typed["closed_at"])
    early = (closed != MISSING_TIME) & (created != MISSING_TIME) & (closed < created)
    opportunities.note(NoteKind.CLOSED_BEFORE_CREATED, early & _without_problems(opportunities))


def _without_problems(check: TableCheck) -> np.ndarray:
    """The rows of ``check`` that no rule flagged (those a lenient load keeps)."""
    kept = np.ones(len(check.frame) if check.frame is not None else 0, dtype=bool)
    kept[list(check.bad_reasons)] = False
    return kept


#: The reason of a row whose lead is in the leads file, its row set aside (a lenient load).
LEAD_SET_ASIDE = "its lead's row was set aside"

#: The reason of a row whose ``lead_id`` names a lead only read loosely
#: (``features.text.loose_id``: surrounding spaces, invisible characters, full-width forms
#: and letter case set aside): still not that lead's row, since ids are compared as
#: written, but the batch job withholds that lead when the row would have decided its
#: consent or its open rejection (``serving.chunk_scoring``).
SPACED_LEAD_ID = (
    "points to a lead_id that is not in leads as written, but names one once its "
    "surrounding spaces, invisible characters, full-width forms and letter case are set "
    "aside (ids are compared as written)"
)


def _spaced_leads(known: pd.Index, child_leads: pd.Series, unknown: np.ndarray) -> np.ndarray:
    """Which of the ``unknown`` child rows name a lead of ``known`` once both ids are read
    loosely (``features.text.loose_id``)."""
    spaced = np.zeros(len(child_leads), dtype=bool)
    if unknown.any():
        rows = np.flatnonzero(unknown)
        loosely_known = pd.Index(_loose_texts(known)).unique()
        loose = pd.Series(_loose_texts(child_leads.iloc[rows]), dtype=object)
        spaced[rows] = positions_in(loosely_known, loose) >= 0
    return spaced


def _loose_texts(ids: pd.Index | pd.Series) -> list[str | None]:
    """``features.text.arrow_loose_ids`` of pandas ids, as Python strings."""
    return arrow_loose_ids(pa.array(ids.astype(str), pa.string())).to_pylist()


def _rejected_rows(check: TableCheck) -> list[RejectedRow]:
    if check.frame is None or not check.bad_reasons:
        return []
    key = TABLES_BY_NAME[check.table.name].primary_key or "lead_id"
    keys = check.frame.get(key)
    rows: list[RejectedRow] = []
    for position, reason in sorted(check.bad_reasons.items()):
        columns = frozenset(check.bad_columns.get(position, ()))
        value = None if keys is None else text_of(keys.iloc[position])
        rows.append(
            RejectedRow(
                table=check.table.name,
                row=position + 1,
                key=value if _key_is_safe(value, key, columns) else None,
                reason=reason,
                columns=columns,
            )
        )
    return rows


def _key_is_safe(value: str | None, key: str, columns: frozenset[str]) -> bool:
    """Whether a set-aside row's key may be shown. A CSV row missing a field shifts its
    values one column over, so its key may hold the next column's value (an e-mail address,
    a name); such a row breaks several columns at once. So the key is shown only when its
    own column is not among the row's problems, at most one other column is, and it holds
    no ``@`` (an e-mail address is never an identifier to print)."""
    return value is not None and key not in columns and len(columns) <= 1 and "@" not in value


def positions_in(index: pd.Index, values: pd.Series) -> np.ndarray:
    """Position of each value in ``index`` (-1 when absent), hashing each distinct value once.

    Child tables repeat each lead id many times; looking up the distinct ids only is
    several times faster than looking up every row.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    found = np.append(index.get_indexer(uniques), -1)
    return found[codes]


def empty_table(table: Table) -> pd.DataFrame:
    """An empty, correctly typed frame for a contract table."""
    return check_table(table, None, table.name).clean_frame()
