"""An export's table files: which file holds each table, and reading one as the loader does.

A table is ``<name>.parquet`` or ``<name>.csv`` in the export directory. A CSV is read as
text (the contract parses it later), once it is known to be UTF-8, to have a header that
names each column once, and to have no row longer than its header; a Parquet file is read
as stored, text as Arrow-backed strings. Every refusal is a ``ContractError`` naming the
file. ``features.loading`` builds the export from these tables; the batch job reads the
same files in chunks with the same options (``serving.export_reading``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import TABLES
from features.csv_fields import (
    EMPTY_CSV,
    csv_read_problem,
    csv_records,
    first_long_record,
    other_separator_problem,
)
from features.output import OutputPathError
from features.problems import ContractError, Problem, shorten
from features.table_names import (
    absent_table_warnings,
    both_formats_problem,
    table_named,
    unread_table_problems,
)
from features.text import TEXT
from features.utf8 import require_utf8

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
            problems.append(both_formats_problem(str(root), present[0].name, present[1].name))
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


#: Every name a table file may have (``leads.parquet``, ``consent.csv``, ...).
TABLE_FILE_NAMES = frozenset(
    f"{table.name}{suffix}" for table in TABLES for suffix in SUPPORTED_SUFFIXES
)


def check_not_an_export_table(out: Path, data: str | Path) -> Path:
    """Refuse an output path that is one of the export's table files, there or not, in
    any case (``Rejections.parquet``).

    Written there, the output would replace a table of the very export it was computed
    from (``--out export/rejections.parquet``), or be read as a table next time (an output
    named ``consent.csv`` in an export without consent).

    Returns:
        ``out``.

    Raises:
        features.output.OutputPathError: naming the path and the table.
    """
    root = _local_path(data)
    table = table_named(out.name)  # any case: the loader refuses a second copy of a table
    if table is None or not root.is_dir():
        return out
    if out.resolve().parent == root.resolve():
        raise OutputPathError(
            f"{out}: is the {table} table of the export --data {data} reads; write the "
            "output elsewhere"
        )
    return out


def _local_path(data: str | Path) -> Path:
    """``data`` as a local path: a ``file:`` URI (as Spark takes) is its path; any other
    URI (``s3a://``) names no local folder."""
    text = str(data)
    if text.startswith("file:"):
        return Path(url2pathname(urlsplit(text).path))
    return Path(text)


def unread_entries(root: Path) -> list[str]:
    """Names of the entries of ``root`` that are not a table file the loader reads."""
    return [
        entry.name
        for entry in root.iterdir()
        if not (entry.name in TABLE_FILE_NAMES and entry.is_file())
    ]


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
    """Refuse a CSV whose header names a column twice (pandas would rename one silently),
    or is one column holding another separator (``other_separator_problem``)."""
    header = csv_header(path)
    separated = other_separator_problem(str(path), header)
    if separated is not None:
        raise ContractError([separated])
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


#: Verify each page's CRC where the writer stored one (``write_page_checksum``; most
#: writers do not, and such pages are read as they are): a page damaged in storage or in
#: transit otherwise reads back as other values without an error.
VERIFY_PAGE_CHECKSUMS = True


def _read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file as the loader reads it (``arrow_to_pandas``).

    Raises:
        ContractError: a text column holds bytes that are not UTF-8 (``require_utf8_text``).
    """
    table = pq.read_table(path, page_checksum_verification=VERIFY_PAGE_CHECKSUMS)
    require_utf8_text(table, str(path))
    return arrow_to_pandas(table, self_destruct=True)


#: Why a Parquet text column holding other bytes is refused, as a CSV file that is not
#: UTF-8 is: Parquet's text is UTF-8 by its own specification, so the writer got it wrong.
NOT_UTF8_TEXT = (
    "a text value holds bytes that are not UTF-8 (Parquet text is UTF-8; the writer stored "
    "another encoding or damaged bytes)"
)


def require_utf8_text(table: pa.Table, file: str, first_row: int = 1) -> None:
    """Refuse ``table`` (rows from ``first_row`` of ``file``) if a text column holds bytes
    that are not UTF-8, naming each such column, its first such row and how many: pyarrow
    reads them without a word, and they fail later, far from the file (a crash turning
    them into Python strings, or an id that matches nothing). Checking costs about 4 ms
    per million values.

    Raises:
        ContractError: one problem per such column.
    """
    problems = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            rows = _rows_not_utf8(column)
            first = first_row + rows[0]
            problems.append(Problem(file, NOT_UTF8_TEXT, name, first, count=len(rows)))
    if problems:
        raise ContractError(problems)


def _rows_not_utf8(column: pa.ChunkedArray) -> list[int]:
    """The 0-based rows of a text column whose bytes are not UTF-8 (the slow path)."""
    values = column.cast(pa.binary()).to_pylist()
    return [row for row, value in enumerate(values) if value is not None and not _utf8(value)]


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
