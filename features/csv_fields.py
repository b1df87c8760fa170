"""Rows of a CSV file with more fields than its header, found by Arrow's CSV parser.

pandas' C parser checks every row's field count against the header, except the first row
of each block it tokenises (every 262,144th data row of a narrow file, and the first row of
each chunk when a file is read in chunks; pandas-dev/pandas#11569): extra fields on exactly
such a row are dropped without an error. Arrow's parser counts every row, so one pass of it
finds the rows to look at; ``features.loading.require_field_counts`` then lets pandas,
counting every row, give its own verdict on them.
"""

from __future__ import annotations

import csv
import re
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


def is_blank_record(fields: list[str]) -> bool:
    """Whether a CSV record is a line pandas skips: empty, or spaces and tabs only."""
    return len(fields) <= 1 and not "".join(fields).strip(" \t")


def data_row(path: Path, record: int) -> int:
    """The data row (1-based; the header and blank lines are no rows, as everywhere in the
    loader) of a CSV file's ``record``-th record as pandas counts records in its errors
    (1-based; blank lines count, a line break inside a quoted value does not).

    A file the ``csv`` module cannot read up to that record (a NUL byte, a huge field)
    gives the record's number less the header.
    """
    rows = 0
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for number, fields in enumerate(csv.reader(handle), start=1):
                rows += not is_blank_record(fields)
                if number >= record:
                    break
    except (csv.Error, UnicodeDecodeError):
        return record - 1
    return rows - 1
