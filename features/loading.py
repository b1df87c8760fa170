"""Read an export directory into typed, validated tables.

The export is one directory with one file per contract table (``.parquet`` or ``.csv``).
Every problem is collected before anything is reported, each naming the file, the column,
the first offending row and its value. In lenient mode (used by the batch scoring job) rows
with row-level problems are set aside with their reason instead of failing the load.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.coercion import TableCheck, check_table
from features.contract import (
    EVENT_TIME_COLUMN,
    LEAD_CHILD_TABLES,
    TABLES,
    TABLES_BY_NAME,
    Table,
)
from features.csv_fields import EMPTY_CSV, csv_read_problem, csv_records, first_long_record
from features.problems import ContractError, Problem, shorten
from features.table_names import absent_table_warnings, unread_table_problems
from features.text import SURROUNDING_SPACES, TEXT, text_of
from features.timestamps import as_utc, latest_believable_time
from features.utf8 import require_utf8

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".parquet", ".csv")
#: What the loader takes as a table, for ``features.table_names.unread_table_problems``.
READ_TABLE_FILES = "a file named exactly {table}.parquet or {table}.csv"
#: Text is held as Arrow-backed strings (not Python objects) from the file onwards.
ARROW_STRING = TEXT
#: How every CSV of an export is read: all text (parsed by the contract later), empty
#: fields missing, and a row with more fields than the header an error, never a shift.
CSV_OPTIONS: dict[str, Any] = {
    "dtype": ARROW_STRING,
    "keep_default_na": False,
    "na_values": [""],
    "encoding": "utf-8",
    "engine": "c",
    "index_col": False,
    "on_bad_lines": "error",
}


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
    """

    tables: dict[str, pd.DataFrame]
    snapshot_at: pd.Timestamp
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    rejected_rows: list[RejectedRow] = field(default_factory=list)

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
            (``features.timestamps.CLOCK_SKEW_ALLOWED``).

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
    for warning in absent:
        logger.warning(warning)
        export.warnings.append(warning)
    return export


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
) -> Export:
    """Validate and type raw tables (strings or native types) into an ``Export``.

    Args:
        raw: table name to DataFrame as read; optional tables may be missing.
        files: where each table came from, for messages.
        lenient: set bad rows aside instead of failing (see ``load_export``).
        snapshot_at: the export's end; defaults to the latest event time in the data.

    Raises:
        ContractError: listing every problem found.
    """
    file_names = {name: str(path) for name, path in (files or {}).items()}
    checks = {
        table.name: check_table(table, raw.get(table.name), file_names.get(table.name, table.name))
        for table in TABLES
    }
    _check_references(checks, lenient)
    problems = [p for check in checks.values() for p in check.problems]
    structural = [p for check in checks.values() for p in check.structural]
    warnings = [w for check in checks.values() for w in check.warnings]
    if structural or (problems and not lenient):
        for warning in warnings:  # a note may explain a problem (a lead_id with spaces)
            logger.warning(warning)
        raise ContractError(structural + problems, notes=warnings)
    rejected = [row for check in checks.values() for row in _rejected_rows(check)]
    tables = {name: check.clean_frame() for name, check in checks.items()}
    snapshot = snapshot_at
    if snapshot is None:  # a snapshot the caller chose needs no note on later closes
        snapshot = latest_timestamp(tables)
        warnings += _closes_after(tables, snapshot)
    for warning in warnings:
        logger.warning(warning)
    return Export(
        tables=tables,
        snapshot_at=snapshot,
        files=dict(files or {}),
        warnings=warnings,
        rejected_rows=rejected,
    )


def latest_timestamp(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    """The latest event time of any table (the snapshot time).

    Only each table's event time (``EVENT_TIME_COLUMN``) marks the export's end: an
    opportunity's ``closed_at`` may be a planned close date still ahead (CRMs keep one on
    open deals), and taking it would move the snapshot into the future, turning outcomes
    nobody has seen yet into negatives.
    """
    return event_time_range(tables)[1]


def event_time_range(tables: Mapping[str, pd.DataFrame]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The earliest and the latest event time (``EVENT_TIME_COLUMN``) of any table.

    Raises:
        ContractError: no table holds an event time.
    """
    bounds = [
        (tables[name][column].min(), tables[name][column].max())  # missing times skipped
        for name, column in EVENT_TIME_COLUMN.items()
        if name in tables and column in tables[name]
    ]
    present = [(first, last) for first, last in bounds if pd.notna(last)]
    if not present:
        raise ContractError([Problem("export", "no timestamps found in any table")])
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


def locate_table_files(root: Path) -> tuple[dict[str, Path], list[Problem], list[str]]:
    """The file of each table in an export directory, the problems finding them, and the
    warnings for absent tables (one listing of the directory for all three).

    A table may be ``<name>.parquet`` or ``<name>.csv`` but not both; optional tables may
    be absent, and an absent one whose absence changes who is contacted is warned of,
    naming look-alike files (``features.table_names.absent_table_warnings``). Any other
    entry that plainly holds a table (``consent.CSV``, ``consent.csv.gz``, a directory;
    ``features.table_names``) is a problem, never skipped.
    """
    files: dict[str, Path] = {}
    problems: list[Problem] = []
    for table in TABLES:
        found = [root / f"{table.name}{suffix}" for suffix in SUPPORTED_SUFFIXES]
        present = [path for path in found if path.is_file()]
        if len(present) > 1:
            problems.append(
                Problem(str(root), f"both {present[0].name} and {present[1].name} exist; keep one")
            )
        elif present:
            files[table.name] = present[0]
        elif not table.optional:
            problems.append(
                Problem(
                    str(root / f"{table.name}.parquet|.csv"),
                    f"required table {table.name!r} is missing",
                )
            )
    taken = {name: path.name for name, path in files.items()}
    entries = unread_entries(root)
    unread = unread_table_problems(str(root), entries, READ_TABLE_FILES, taken)
    return files, unread + problems, absent_table_warnings(files, entries, READ_TABLE_FILES)


def unread_entries(root: Path) -> list[str]:
    """Names of the entries of ``root`` that are not a table file the loader reads."""
    read = {f"{table.name}{suffix}" for table in TABLES for suffix in SUPPORTED_SUFFIXES}
    return [entry.name for entry in root.iterdir() if not (entry.name in read and entry.is_file())]


def _read_files(files: Mapping[str, Path], problems: list[Problem]) -> dict[str, pd.DataFrame]:
    raw: dict[str, pd.DataFrame] = {}
    for name, path in files.items():
        try:
            raw[name] = read_table_file(path)
        except ContractError as error:
            problems.extend(error.problems)
    return raw


def read_table_file(path: Path) -> pd.DataFrame:
    """Read one table file, CSV as strings (parsed later) and Parquet as stored.

    Raises:
        ContractError: when the file is not a readable CSV or Parquet file.
    """
    try:
        if path.suffix == ".csv":
            return _read_csv(path)
        return _read_parquet(path)
    except ContractError:
        raise
    except (
        UnicodeDecodeError,  # only if the file changed after ``require_utf8`` read it
        pd.errors.ParserError,
        pd.errors.ParserWarning,
        pd.errors.EmptyDataError,
    ) as error:
        raise ContractError([csv_read_problem(path, error)]) from error
    except Exception as error:  # pyarrow raises several unrelated types for a corrupt file
        raise ContractError([parquet_read_problem(path, error)]) from error


def parquet_read_problem(path: Path, error: Exception) -> Problem:
    """pyarrow's error reading the Parquet file ``path``, as a problem (the loader's and the
    batch job's words alike)."""
    reason = f"not a readable Parquet file ({type(error).__name__}: {shorten(error, 120)})"
    return Problem(str(path), reason)


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV file as strings, once it is known to be UTF-8 (else its first bad byte is named)."""
    require_utf8(path)
    _check_csv_header(path)
    require_field_counts(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(path, **CSV_OPTIONS)


def require_field_counts(path: Path) -> None:
    """Refuse a CSV file with a row of more fields than its header, wherever the row is.

    pandas misses such a row when it starts a block it tokenises (``features.csv_fields``).
    When Arrow's parser finds one, pandas reads the file again up to a little past it, in
    chunks that do not start near it, so that it counts that row: the error is then pandas'
    own, naming the line as a whole-file read names it. Should pandas accept the row after
    all (a trailing separator on the first row, which ``index_col=False`` drops), the file
    is read as before.

    Raises:
        pandas.errors.ParserError: naming the line, as pandas' reader does.
        pandas.errors.ParserWarning: as pandas' reader raises it.
    """
    record = first_long_record(path)
    if record is None:
        return
    row = record - 2  # the data row, counted from 0
    chunk_rows = _chunk_rows_not_starting_near(row)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        if chunk_rows is None:  # pragma: no cover - see _chunk_rows_not_starting_near
            pd.read_csv(path, **CSV_OPTIONS, low_memory=False)
            return
        with pd.read_csv(path, **CSV_OPTIONS, chunksize=chunk_rows) as reader:
            rows_read = 0
            for frame in reader:
                rows_read += len(frame)
                if rows_read > row + LONG_ROW_SLACK:
                    return


#: How far pandas' count of rows may stray from Arrow's around a long row (pandas counts
#: some bare carriage returns as an extra line).
LONG_ROW_SLACK = 8
#: Chunk sizes tried, from the first up, for one that starts no chunk near the row.
_VERDICT_CHUNKS = range(65_536, 65_536 + 512)


def _chunk_rows_not_starting_near(row: int) -> int | None:
    """A chunk size for which no chunk starts within ``LONG_ROW_SLACK`` rows of ``row``.

    A size fails only if it divides one of the 17 numbers around ``row``, so among 512
    consecutive sizes one fits (checked for 20,000 random rows up to 10^10); None if not.
    """
    near = range(max(row - LONG_ROW_SLACK, 1), row + LONG_ROW_SLACK + 1)
    fits = (size for size in _VERDICT_CHUNKS if all(index % size for index in near))
    return next(fits, None)


def csv_header(path: Path) -> list[str]:
    """The names in a CSV file's header, as pandas reads them (a byte-order mark and blank
    lines before it dropped; pandas takes a line of spaces for blank too).

    Raises:
        ContractError: the file has no header (it is empty, or blank lines only).
    """
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header = next((fields for fields, blank in csv_records(handle) if not blank), None)
    if header is None:
        raise ContractError([Problem(str(path), EMPTY_CSV)])
    return header


def _check_csv_header(path: Path) -> None:
    """Refuse a CSV whose header names a column twice (pandas would rename one silently)."""
    header = csv_header(path)
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ContractError(
            [Problem(str(path), "column appears more than once in the header", repeated[0])]
        )


#: Arrow types kept by pandas as they are: text as Arrow-backed strings (a fraction of
#: Python objects' memory), integers as nullable integers (not floats when a value is
#: missing, so that an id past 2^53 keeps every digit).
PANDAS_TYPES: dict[pa.DataType, Any] = {
    pa.string(): ARROW_STRING,
    pa.large_string(): ARROW_STRING,
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
}


def arrow_to_pandas(table: pa.Table, *, self_destruct: bool = False) -> pd.DataFrame:
    """An Arrow table (a Parquet file, a batch chunk) as the loader reads it (``PANDAS_TYPES``)."""
    return table.to_pandas(types_mapper=PANDAS_TYPES.get, self_destruct=self_destruct)


def _read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file as the loader reads it (``arrow_to_pandas``)."""
    return arrow_to_pandas(pq.read_table(path), self_destruct=True)


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
                "its lead's row was set aside",
            )


#: The reason of a row whose ``lead_id`` names a lead only without its surrounding spaces
#: (``features.text.SURROUNDING_SPACES``): still not that lead's row, since ids are
#: compared as written, but the batch job withholds that lead when the row would have
#: decided its consent or its open rejection (``serving.chunk_scoring``).
SPACED_LEAD_ID = (
    "points to a lead_id that is not in leads as written, but names one without its "
    "surrounding spaces (ids are compared as written)"
)


def _spaced_leads(known: pd.Index, child_leads: pd.Series, unknown: np.ndarray) -> np.ndarray:
    """Which of the ``unknown`` child rows name a lead of ``known`` once their id is
    stripped of its surrounding spaces."""
    spaced = np.zeros(len(child_leads), dtype=bool)
    if unknown.any():
        rows = np.flatnonzero(unknown)
        stripped = child_leads.iloc[rows].str.strip(SURROUNDING_SPACES)
        spaced[rows] = positions_in(known, stripped) >= 0
    return spaced


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
