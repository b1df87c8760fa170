"""Rows of a CSV file with more fields than its header, found by Arrow's CSV parser.

pandas' C parser checks every row's field count against the header, except the first row
of each block it tokenises (every 262,144th data row of a narrow file, and the first row of
each chunk when a file is read in chunks; pandas-dev/pandas#11569): extra fields on exactly
such a row are dropped without an error. Arrow's parser counts every row, so one pass of it
finds the rows to look at; ``features.table_files.require_field_counts`` then lets pandas,
counting every row, give its own verdict on them.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from features.problems import Problem, shorten

#: Large blocks: the pass reads one column and keeps nothing.
BLOCK_BYTES = 1 << 24


def first_long_record(path: Path) -> int | None:
    """The record number of the first row with more fields than the header, or None.

    Records are counted as pandas counts lines in its errors: the header is record 1 and a
    line break inside a quoted value does not start a record. A file Arrow cannot parse
    (an unterminated quote, say) gives the long rows found before that point, if any: the
    reader that follows gives the verdict on the rest.
    """
    found: list[int] = []

    def note_long_rows(row: pa_csv.InvalidRow) -> str:
        if row.actual_columns > row.expected_columns and row.number is not None:
            found.append(row.number)
            return "error"  # the first one is enough: stop reading
        return "skip"

    options = {
        # One thread, so that Arrow numbers the rows; the header is read as a row, so
        # every row is counted against it whatever the column names.
        "read_options": pa_csv.ReadOptions(
            use_threads=False, block_size=BLOCK_BYTES, autogenerate_column_names=True
        ),
        "parse_options": pa_csv.ParseOptions(
            newlines_in_values=True, invalid_row_handler=note_long_rows
        ),
        "convert_options": pa_csv.ConvertOptions(
            include_columns=["f0"], column_types={"f0": pa.string()}
        ),
    }
    try:
        with pa_csv.open_csv(path, **options) as reader:
            for _ in reader:
                pass
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
        pass
    return found[0] if found else None


#: Why a CSV file without a header row (empty, or blank lines only) is refused.
EMPTY_CSV = "is empty: not even a header row"
_FIELD_COUNT = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_OPEN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")
#: pandas' warning for a first data row longer than the header (it would drop the extra).
_FIRST_ROW_LONG = "Length of header or names does not match length of data"
_WHY_LONG = "(a comma inside an unquoted value, or a row shifted by a missing quote)"


#: Separators a CSV export is written with by mistake (a spreadsheet's locale), by name.
OTHER_SEPARATORS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def other_separator_problem(file: str, header: list[str]) -> Problem | None:
    """The problem of a CSV whose header reads as one column holding another separator
    (every contract table has several columns): the file is, say, semicolon-separated.
    None for any other header."""
    if len(header) != 1:
        return None
    for separator, name in OTHER_SEPARATORS.items():
        if separator in header[0]:
            message = (
                f"the header reads as one column holding a {name}: the file looks "
                f"{name}-separated, and the contract's CSV is comma-separated"
            )
            return Problem(file, message)
    return None


def csv_read_problem(path: Path, error: Exception) -> Problem:
    """pandas' error reading the CSV file ``path``, in the contract's words and rows.

    A row with too many fields (the first row too, which pandas only warns of) and a quote
    never closed are named by their data row (``data_row``); an empty file says so; any
    other error keeps pandas' text (which never quotes a cell).
    """
    text = str(error)
    if found := _FIELD_COUNT.search(text):  # "Expected 4 fields in line 8, saw 5"
        expected, line, saw = (int(group) for group in found.groups())
        message = f"has {saw} fields where the header has {expected} {_WHY_LONG}"
        return Problem(str(path), message, row=data_row(path, line))
    if isinstance(error, pd.errors.ParserWarning) and _FIRST_ROW_LONG in text:
        return Problem(str(path), f"has more fields than the header {_WHY_LONG}", row=1)
    if found := _OPEN_QUOTE.search(text):
        message = "opens a quote that is never closed: the rest of the file would be one value"
        return Problem(str(path), message, row=data_row(path, int(found[1]) + 1))
    if isinstance(error, pd.errors.EmptyDataError):
        return Problem(str(path), EMPTY_CSV)
    detail = shorten(text.removeprefix("Error tokenizing data. C error: ").strip(), 120)
    return Problem(str(path), f"not a readable UTF-8 CSV file ({type(error).__name__}: {detail})")


#: pandas reads a field of any length; the ``csv`` module, used to number rows and read
#: headers, stops at 128 KiB by default.
csv.field_size_limit(2**31 - 1)


def csv_records(lines: Iterable[str]) -> Iterator[tuple[list[str], bool]]:
    """The records of CSV text (``lines`` read with ``newline=""``), each with whether pandas
    skips it as blank: nothing but spaces and tabs in its raw text (a quoted empty value,
    ``""``, is a record)."""
    consumed: list[str] = []

    def kept(source: Iterable[str]) -> Iterator[str]:
        for line in source:
            consumed.append(line)
            yield line

    for fields in csv.reader(kept(lines)):  # the reader takes a record's lines, no more
        blank = not "".join(consumed).strip(" \t\r\n")
        consumed.clear()
        yield fields, blank


def data_row(path: Path, record: int) -> int:
    """The data row (1-based; the header and blank lines are no rows, as everywhere in the
    loader) of a CSV file's ``record``-th record as pandas counts records in its errors
    (1-based; blank lines count, a line break inside a quoted value does not).

    A file the ``csv`` module cannot read up to that record gives the record's number less
    the header.
    """
    rows = 0
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for number, (_, blank) in enumerate(csv_records(handle), start=1):
                rows += not blank
                if number >= record:
                    break
    except (csv.Error, UnicodeDecodeError):
        return record - 1
    return rows - 1
