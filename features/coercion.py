"""Type one raw table by its contract and record every row that breaks it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.cell_descriptions import describe_cell
from features.contract import (
    ACTIVITIES,
    AT_SIGNS,
    EVENT_TIME_COLUMN,
    OTHER_ACTIVITY,
    PERSONAL_ID_RULE,
    Column,
    Kind,
    Table,
)
from features.csv_fields import other_separator_problem
from features.numbers import numbers_from_text
from features.problems import Problem
from features.row_notes import NoteKind, RowNote, value_digests
from features.text import TEXT, blank_texts, is_blank, texts_of
from features.timestamps import (
    CLOCK_SKEW_TEXT,
    SPAN,
    TIMESTAMP_DTYPE,
    latest_believable_time,
    outside_span,
    parse_timestamps,
    typed_moments,
)


@dataclass
class TableCheck:
    """The outcome of checking one table: typed columns, problems and bad rows."""

    table: Table
    file: str
    frame: pd.DataFrame | None
    typed: dict[str, pd.Series] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    structural: list[Problem] = field(default_factory=list)
    notes: list[RowNote] = field(default_factory=list)
    bad_reasons: dict[int, str] = field(default_factory=dict)
    #: Each bad row's offending columns (all of them; ``bad_reasons`` keeps the first).
    bad_columns: dict[int, set[str]] = field(default_factory=dict)

    def flag(self, mask: np.ndarray, column: str | None, message: str) -> None:
        """Record that the rows in ``mask`` break the contract in ``column``.

        The problem describes the first row's value (``features.cell_descriptions``) and
        never quotes it; a row's reason in a lenient load names the column and the rule only.
        """
        positions = np.flatnonzero(mask)
        if positions.size == 0 or self.frame is None:
            return
        first = int(positions[0])
        found = self._described(column, first)
        self.problems.append(
            Problem(self.file, message, column, first + 1, found, int(positions.size))
        )
        reason = f"{column}: {message}" if column else message
        for position in positions.tolist():
            self.bad_reasons.setdefault(position, reason)
            if column is not None:
                self.bad_columns.setdefault(position, set()).add(column)

    def note(self, kind: NoteKind, rows: np.ndarray, values: tuple[str, ...] = ()) -> None:
        """Note the ``rows`` (a mask) as a ``RowNote`` of ``kind``, if there are any: how
        many, the first, and ``values`` (digests of the distinct values concerned)."""
        if rows.any():
            first = int(np.flatnonzero(rows)[0]) + 1
            self.notes.append(RowNote(kind, self.file, int(rows.sum()), first, values))

    def _described(self, column: str | None, position: int) -> str | None:
        """The value of contract column ``column`` at ``position``, described."""
        if self.frame is None or column is None or column not in self.frame:
            return None
        contract_column = self.table.column(column)
        value = self.frame[column].iloc[position]
        return describe_cell(value, contract_column, self.table, shiftable=self.is_csv)

    @property
    def is_csv(self) -> bool:
        """Whether the table was read from a CSV file, whose rows' values can shift."""
        return not self.file.lower().endswith(".parquet")

    def clean_frame(self) -> pd.DataFrame:
        """The typed table, without the rows set aside, personal columns flagged in attrs."""
        columns = dict(self.typed)
        if self.frame is not None and self.table.name == "leads":
            extras = [c for c in self.frame.columns if c not in self.table.column_names]
            columns.update({c: self.frame[c] for c in extras})
        frame = pd.DataFrame(columns)
        if self.bad_reasons:
            keep = np.ones(len(frame), dtype=bool)
            keep[list(self.bad_reasons)] = False
            frame = frame.loc[keep]
        frame = frame.reset_index(drop=True)
        frame.attrs["personal_columns"] = sorted(c.name for c in self.table.columns if c.personal)
        return frame


def check_table(
    table: Table, raw: pd.DataFrame | None, file: str, clock: pd.Timestamp | None = None
) -> TableCheck:
    """Type ``raw`` by the contract of ``table``, collecting every problem.

    Args:
        table: the contract table.
        raw: the table as read (strings from CSV, native types from Parquet), or None
            when the file is absent.
        file: the file name used in messages.
        clock: the moment no event may be dated after (``CLOCK_SKEW_ALLOWED`` aside);
            default: this machine's clock now.
    """
    if raw is None:
        raw = pd.DataFrame({c: pd.Series([], dtype=object) for c in table.required_columns})
        if not table.optional:
            return _structural(table, raw, file, f"required table {table.name!r} is missing")
    raw = raw.reset_index(drop=True)
    check = TableCheck(table=table, file=file, frame=raw)
    check.structural += missing_column_problems(table, [str(c) for c in raw.columns], file)
    empty = empty_table_problem(table, len(raw), file)
    if empty is not None:
        check.structural.append(empty)
    for column in table.columns:
        check.typed[column.name] = _coerce_column(check, column)
    _check_primary_key(check)
    _check_event_times_have_happened(check, latest_believable_time(clock))
    _note_spaced_lead_ids(check)
    return check


def _note_spaced_lead_ids(check: TableCheck) -> None:
    """Warn of ``leads.lead_id`` values with spaces around them (a blank one is a problem of
    its row, ``BLANK_ID``, not a spaced id).

    Ids are compared as written, so such a lead is found by no row of another table that
    writes its id without the spaces: those rows would only be reported as pointing to an
    unknown lead. The ids are counted, never quoted.
    """
    ids = check.typed.get("lead_id") if check.table.name == "leads" else None
    if ids is None or ids.empty:
        return
    spaced = (ids.notna() & (ids.str.strip() != ids)).to_numpy(dtype=bool) & ~blank_texts(ids)
    check.note(NoteKind.SPACED_LEAD_ID, spaced)


#: Why an event dated ahead of this machine's clock is refused.
FUTURE_EVENT = (
    f"dated in the future (after this machine's clock plus {CLOCK_SKEW_TEXT}): "
    "the export ends at its latest event, so one such row would count every "
    "outcome not yet known as a negative"
)


def _check_event_times_have_happened(check: TableCheck, believable: pd.Timestamp) -> None:
    """Flag rows whose event time lies in the future (``CLOCK_SKEW_ALLOWED`` aside).

    Such a row has not happened yet; most often its year is mistyped. The export's end (the
    snapshot) is its latest event time, and taken from such a row it would close every
    censored example's horizon. Only the event time is checked: an opportunity's planned
    ``closed_at`` may lie ahead.
    """
    column = EVENT_TIME_COLUMN[check.table.name]
    times = check.typed.get(column)
    if times is None or times.empty:
        return
    check.flag((times > believable).to_numpy(), column, FUTURE_EVENT)


def empty_table_problem(table: Table, rows: int, file: str) -> Problem | None:
    """The problem with a required table that has no rows (None if it has some, or is optional).

    The one form of this rule: the loader applies it to the rows it read, the batch job to
    the rows of each table file before it routes anything (``serving.export_reading``,
    ``serving.spark_export``), so both refuse such an export with the same message.
    """
    if rows or table.optional:
        return None
    return Problem(file, f"required table {table.name!r} has no rows")


def _structural(table: Table, raw: pd.DataFrame, file: str, message: str) -> TableCheck:
    check = TableCheck(table=table, file=file, frame=raw)
    check.structural.append(Problem(file, message))
    check.typed = {c.name: _empty_series(c) for c in table.columns}
    return check


def _coerce_column(check: TableCheck, column: Column) -> pd.Series:
    frame = check.frame
    assert frame is not None
    if column.name not in frame:
        return _missing_series(column, len(frame))
    raw = frame[column.name]
    if column.kind is not Kind.STRING:  # text columns decode bytes by their own rule
        raw = _bytes_as_text(raw)
    if column.kind is Kind.CATEGORY or not column.required:
        raw = _blank_as_missing(raw)
    present = raw.notna().to_numpy()
    typed, bad, message = COERCERS[column.kind](raw, column, check)
    check.flag(bad & present, column.name, message)
    if column.required:
        check.flag(~present, column.name, "required value is missing")
    return typed


def _empty_series(column: Column) -> pd.Series:
    return _missing_series(column, 0)


def _missing_series(column: Column, length: int) -> pd.Series:
    """A correctly typed column of ``length`` missing values (an absent optional column)."""
    if column.kind in (Kind.TIMESTAMP, Kind.DATE):
        return pd.Series(pd.NaT, index=range(length), dtype=TIMESTAMP_DTYPE)
    if column.kind in (Kind.INTEGER, Kind.FLOAT):
        return pd.Series(np.full(length, np.nan))
    if column.kind is Kind.CATEGORY:
        codes = np.full(length, -1)
        return pd.Series(pd.Categorical.from_codes(codes, categories=list(column.vocabulary)))
    return pd.Series(np.full(length, None, dtype=object)).astype(TEXT)


def missing_column_problems(table: Table, columns: list[str], file: str) -> list[Problem]:
    """A problem for each required column of ``table`` that ``columns`` lacks; or, when the
    header reads as one column holding another separator (a semicolon-separated CSV), that
    one problem for the file, which is what the operator has to fix."""
    missing = [c for c in table.required_columns if c not in columns]
    separated = other_separator_problem(file, columns) if missing else None
    if separated is not None:
        return [separated]
    return [Problem(file, "required column is missing", column=c) for c in missing]


Coerced = tuple[pd.Series, np.ndarray, str]


def _coerce_string(raw: pd.Series, column: Column, check: TableCheck) -> Coerced:
    """Text as it is; numbers and booleans (Parquet's) written by ``features.text``."""
    typed, not_text = texts_of(raw)
    check.flag(not_text, column.name, "not text (an infinite number, or bytes that are not UTF-8)")
    if column.is_identifier:
        signs = f"[{''.join(AT_SIGNS)}]"
        at = typed.str.contains(signs, regex=True).to_numpy(dtype=bool, na_value=False)
        check.flag(at, column.name, PERSONAL_ID_RULE)
        check.flag(blank_texts(typed), column.name, BLANK_ID)
    return (typed, *_length_problems(typed, column))


#: Why a blank identifier (empty, or only spaces or invisible characters) is refused, as
#: the API refuses it: it names no row any other row can point to.
BLANK_ID = "blank (empty, or only spaces or invisible characters): an id must name something"


def _length_problems(typed: pd.Series, column: Column) -> tuple[np.ndarray, str]:
    """Values longer than the column allows."""
    limit = column.max_length
    assert limit is not None
    lengths = typed.str.len().to_numpy(dtype=np.float64, na_value=np.nan)
    if column.is_identifier:
        return lengths > limit, f"longer than {limit} characters"
    return lengths > limit, f"longer than {limit:,} characters"


def _coerce_timestamp(raw: pd.Series, column: Column, check: TableCheck) -> Coerced:
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = typed_moments(raw)
        bad = outside_span(parsed)
        parsed = parsed.where(~pd.Series(bad, index=parsed.index))
    else:
        parsed, bad = parse_timestamps(raw)
    if column.kind is Kind.DATE:
        parsed = parsed.dt.floor("D")
    return parsed, bad, f"not an ISO 8601 {column.kind.value} {SPAN}"


def _coerce_number(raw: pd.Series, column: Column, check: TableCheck) -> Coerced:
    if pd.api.types.is_bool_dtype(raw):  # a contract number is never a boolean
        values = np.full(len(raw), np.nan)
    else:
        values = numbers_from_text(raw)
    bad = ~np.isfinite(values)
    if column.kind is Kind.INTEGER:
        bad |= np.isfinite(values) & (np.floor(values) != values)
    numbers = pd.Series(np.where(bad, np.nan, values))
    message = "not a whole number" if column.kind is Kind.INTEGER else "not a finite number"
    return numbers, bad, message


def _blank_as_missing(raw: pd.Series) -> pd.Series:
    """``raw`` with its blank text values missing: a blank category, or a blank value of an
    optional column, is a missing one, as an empty CSV field is (and as in the API)."""
    blank = _blank(raw)
    return raw.where(~blank) if blank.any() else raw


#: What ``pandas.api.types.infer_dtype`` calls a column with bytes in it.
_MAY_HOLD_BYTES = frozenset({"bytes", "mixed"})


def _bytes_as_text(raw: pd.Series) -> pd.Series:
    """``raw`` with Parquet text stored as bytes (no UTF-8 annotation, as some writers store
    every string) read as the UTF-8 text it holds, as the contract says; bytes that are not
    UTF-8 stay bytes, which the column's rule then refuses."""
    if not pd.api.types.is_object_dtype(raw):
        return raw
    if pd.api.types.infer_dtype(raw, skipna=True) not in _MAY_HOLD_BYTES:
        return raw
    return raw.map(_decoded)


def _decoded(value: object) -> object:
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _blank(raw: pd.Series) -> np.ndarray:
    """Blank text values (``features.text.is_blank``; missing values and non-text are not
    blank)."""
    if isinstance(raw.dtype, pd.StringDtype):
        return blank_texts(raw)
    if pd.api.types.is_object_dtype(raw):  # Parquet objects: text, bytes, booleans, ...
        return np.fromiter(
            (isinstance(v, str) and is_blank(v) for v in raw), dtype=bool, count=len(raw)
        )
    return np.zeros(len(raw), dtype=bool)


def _coerce_category(raw: pd.Series, column: Column, check: TableCheck) -> Coerced:
    codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    normalised = pd.Index([str(u).strip().lower() for u in uniques], dtype=object)
    vocabulary = pd.Index(column.vocabulary)
    unique_codes = vocabulary.get_indexer(normalised)
    unknown_uniques = unique_codes < 0
    is_activity_type = column.name == "activity_type" and check.table is ACTIVITIES
    if is_activity_type and unknown_uniques.any():
        unique_codes = np.where(unknown_uniques, vocabulary.get_loc(OTHER_ACTIVITY), unique_codes)
        unknown = np.isin(codes, np.flatnonzero(unknown_uniques))
        digests = value_digests(normalised[unknown_uniques].tolist())  # never the types
        check.note(NoteKind.UNKNOWN_ACTIVITY_TYPE, unknown, digests)
    mapped = np.where(codes >= 0, unique_codes[np.maximum(codes, 0)] if len(uniques) else -1, -1)
    bad = (codes >= 0) & (mapped < 0)
    typed = pd.Series(pd.Categorical.from_codes(np.where(bad, -1, mapped), categories=vocabulary))
    allowed = ", ".join(column.vocabulary)
    return typed, bad, f"not one of the allowed values ({allowed})"


COERCERS: dict[Kind, Callable[[pd.Series, Column, TableCheck], Coerced]] = {
    Kind.STRING: _coerce_string,
    Kind.TIMESTAMP: _coerce_timestamp,
    Kind.DATE: _coerce_timestamp,
    Kind.INTEGER: _coerce_number,
    Kind.FLOAT: _coerce_number,
    Kind.CATEGORY: _coerce_category,
}


def _check_primary_key(check: TableCheck) -> None:
    key = check.table.primary_key
    if key is None or check.frame is None or key not in check.frame:
        return
    values = check.typed[key]
    duplicated = values.notna().to_numpy() & values.duplicated(keep=False).to_numpy()
    check.flag(duplicated, key, "duplicate primary key")
