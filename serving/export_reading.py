"""Read an export directory in bounded batches, for jobs that must not hold it all in memory.

The batch scoring job never loads a whole export: it streams each table file in record
batches of the columns that scoring or validation need. Parsing follows the loader
(``features.loading``): Parquet is read as stored, CSV as strings with empty fields missing,
so that every value reaches the contract checks exactly as ``load_export`` would pass it.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.coercion import empty_table_problem, missing_column_problems
from features.config import FeatureConfig
from features.contract import EVENT_TIME_COLUMN, TABLES_BY_NAME
from features.csv_fields import csv_read_problem
from features.loading import not_a_directory
from features.problems import ContractError, Problem
from features.table_files import (
    CSV_OPTIONS,
    VERIFY_PAGE_CHECKSUMS,
    csv_header,
    locate_table_files,
    parquet_read_problem,
    require_field_counts,
    require_utf8_text,
)
from features.timestamps import CLOCK_SKEW_TEXT
from features.utf8 import require_utf8, utf8_problem

BATCH_ROWS = 1 << 20
#: What a CSV column the job does not read becomes: the first byte of each field, never
#: decoded, so that no string is built for it (see ``_csv_batches``).
SKIPPED_CSV_DTYPE = "S1"

#: Contract columns the batch job never reads: free text that is neither a feature nor ever
#: invalid (personal fields, notes, ids of other systems). Skipping them changes no score
#: and no rejected row, and keeps personal data out of the job's memory and work files.
UNUSED_COLUMNS: dict[str, frozenset[str]] = {
    "leads": frozenset({"email", "first_name", "last_name", "account_id"}),
    "rejections": frozenset({"reason_detail", "rep_id"}),
    "opportunities": frozenset({"loss_reason"}),
}


@dataclass(frozen=True)
class ExportFiles:
    """The file holding each table of an export directory (absent optional tables omitted).

    Attributes:
        root: the export directory.
        files: table name to its file.
        warnings: notes on the directory as a whole, such as an absent consent table
            (``features.table_files.locate_table_files``).
    """

    root: Path
    files: dict[str, Path]
    warnings: tuple[str, ...] = ()

    def columns(self, table: str, config: FeatureConfig) -> list[str]:
        """The columns of ``table`` the batch job reads, in file order."""
        wanted = set(TABLES_BY_NAME[table].column_names) - UNUSED_COLUMNS.get(table, frozenset())
        if table == "leads":
            wanted |= {*config.custom_columns.numeric, *config.custom_columns.categorical}
        return [c for c in file_columns(self.files[table]) if c in wanted]


def locate_export(directory: str | Path) -> ExportFiles:
    """Find each table's file and check that required tables and columns are there.

    Raises:
        ContractError: a required table or column is missing, a required table has no
            rows, a table exists in both formats or under a name not read (see
            ``features.table_files.locate_table_files``), or a file cannot be read.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ContractError([Problem(str(root), not_a_directory(root))])
    files, problems, absent = locate_table_files(root)
    if problems:
        raise ContractError(problems)
    found = ExportFiles(root, files, tuple(absent))
    _check_required_columns(found)
    _check_required_rows(found)
    return found


def _check_required_columns(export: ExportFiles) -> None:
    problems: list[Problem] = []
    for name, path in export.files.items():
        columns = list(file_columns(path))
        problems += missing_column_problems(TABLES_BY_NAME[name], columns, str(path))
    if problems:
        raise ContractError(problems)


def _check_required_rows(export: ExportFiles) -> None:
    """Refuse a required table without rows, by the loader's own rule and message."""
    problems = [
        problem
        for name, path in export.files.items()
        if (problem := empty_table_problem(TABLES_BY_NAME[name], _first_rows(path), str(path)))
    ]
    if problems:
        raise ContractError(problems)


def _first_rows(path: Path) -> int:
    """The rows of a Parquet file (from its footer), or whether a CSV file has one (0 or 1),
    read as the loader reads it (a blank line is no row).

    Raises:
        ContractError: the file is unreadable.
    """
    try:
        if path.suffix != ".csv":
            return int(pq.ParquetFile(path).metadata.num_rows)
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return len(pd.read_csv(path, **CSV_OPTIONS, nrows=1))
    except Exception as error:  # pyarrow and pandas raise several unrelated types
        raise _unreadable(path, error) from error


def file_columns(path: Path) -> list[str]:
    """The column names of a table file (Parquet schema or CSV header).

    Raises:
        ContractError: the file is unreadable, or a CSV header names a column twice.
    """
    try:
        names = csv_header(path) if path.suffix == ".csv" else list(pq.read_schema(path).names)
    except ContractError:
        raise
    except Exception as error:  # pyarrow and the csv module raise several unrelated types
        raise _unreadable(path, error) from error
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        problem = Problem(str(path), "column appears more than once in the header", twice[0])
        raise ContractError([problem])
    return names


def available_cpus() -> int:
    """CPUs this process may run on (respects affinity and container CPU sets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def input_fingerprint(export: ExportFiles) -> str:
    """A SHA-256 over every table file's name and bytes: same input, same fingerprint."""
    digest = hashlib.sha256()
    for name in sorted(export.files):
        path = export.files[name]
        digest.update(f"{name}:{path.name}:{path.stat().st_size}\n".encode())
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def iter_batches(
    path: Path, columns: list[str], batch_rows: int = BATCH_ROWS
) -> Iterator[pa.Table]:
    """The chosen columns of a table file, in file order, ``batch_rows`` rows at a time.

    CSV columns arrive as strings (missing when empty), Parquet columns as stored.

    Raises:
        ContractError: the file is not readable CSV or Parquet.
    """
    try:
        if path.suffix == ".csv":
            yield from _csv_batches(path, columns, batch_rows)
        else:
            yield from _parquet_batches(path, columns, batch_rows)
    except ContractError:
        raise
    except Exception as error:  # pyarrow and pandas raise several unrelated types
        raise _unreadable(path, error) from error


def _parquet_batches(path: Path, columns: list[str], batch_rows: int) -> Iterator[pa.Table]:
    source = pq.ParquetFile(path, page_checksum_verification=VERIFY_PAGE_CHECKSUMS)
    schema = pa.schema([source.schema_arrow.field(c) for c in columns])
    found = False
    first_row = 1
    for batch in source.iter_batches(batch_size=batch_rows, columns=columns):
        found = True
        table = pa.Table.from_batches([batch]).replace_schema_metadata(None)
        require_utf8_text(table, str(path), first_row)
        first_row += table.num_rows
        yield table
    if not found:
        yield schema.empty_table()


def _csv_batches(path: Path, columns: list[str], batch_rows: int) -> Iterator[pa.Table]:
    # Every column is split into fields (no ``usecols``, which turns pandas' field-count
    # check off): only then does a row with more fields than the header fail as in the
    # loader, rather than have its extra fields dropped. The columns not wanted are kept as
    # one undecoded byte per field (``_csv_dtypes``), which costs next to nothing; as pandas
    # decodes only what it turns into text, the whole file is checked to be UTF-8 first.
    require_utf8(path)
    require_field_counts(path)  # pandas misses a long row that starts a chunk
    schema = pa.schema([(c, pa.string()) for c in columns])
    options = CSV_OPTIONS | {"dtype": _csv_dtypes(path, columns)}
    found = False
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        reader = pd.read_csv(path, **options, chunksize=batch_rows)
        with reader:
            for frame in reader:
                found = True
                yield pa.Table.from_pandas(frame[columns], schema=schema, preserve_index=False)
    if not found:
        yield schema.empty_table()


def _csv_dtypes(path: Path, columns: list[str]) -> defaultdict[str, Any]:
    """Text for the wanted columns (and an unnamed extra field), ``SKIPPED_CSV_DTYPE`` else."""
    skipped = {name: SKIPPED_CSV_DTYPE for name in file_columns(path) if name not in columns}
    return defaultdict(lambda: CSV_OPTIONS["dtype"], skipped)


#: Why a job without ``--as-of`` cannot score an export whose event times all fail to parse.
NO_EVENT_TIME = (
    "no event time of the export parses as a contract timestamp dated before this "
    f"machine's clock (plus {CLOCK_SKEW_TEXT}): none of "
    + ", ".join(f"{table}.{column}" for table, column in EVENT_TIME_COLUMN.items())
    + "; so there is no export end to score at. `srl validate --data DIR` names each "
    "column's problem (most often a timestamp format changed upstream); or pass --as-of"
)


def timestamp_columns(table: str, columns: list[str]) -> list[str]:
    """The table's event time among ``columns``: the column that marks the export's end.

    As in ``features.loading.latest_timestamp``, a planned ``closed_at`` never does.
    """
    column = EVENT_TIME_COLUMN[table]
    return [column] if column in columns else []


def _unreadable(path: Path, error: Exception) -> ContractError:
    """The problem with a file that could not be read, as the loader names it: for a CSV
    file, its first byte that is not UTF-8 if it has one (the loader checks that first,
    naming the line), else the parser's error."""
    if path.suffix == ".csv":
        return ContractError([utf8_problem(path) or csv_read_problem(path, error)])
    return ContractError([parquet_read_problem(path, error)])
