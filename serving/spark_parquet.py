"""Parquet files as Spark reads them for the job: nanosecond timestamps included.

Spark has no nanosecond timestamp type and refuses a whole file that holds one
(``PARQUET_TYPE_ILLEGAL``), yet pandas writes its tz-aware datetimes as nanoseconds by
default, and the local engine reads them. The job therefore reads with Spark's
``spark.sql.legacy.parquet.nanosAsLong`` (a nanosecond timestamp arrives as its int64
count of nanoseconds, every other type as before) and turns each contract timestamp or
date column that the file's footer types as nanoseconds back into a timestamp in
microseconds, a sub-microsecond rest rounded up: the contract's rule
(``features.timestamps.microseconds_up``), which the local engine applies to the same
file. A column that some files of a table type as nanoseconds and others do not would be
read as raw counts of different units: it is refused, naming the file and the column, as
is any other Parquet type Spark cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from features.contract import TABLES_BY_NAME, Kind
from features.problems import ContractError, Problem

NANOS_AS_LONG = "spark.sql.legacy.parquet.nanosAsLong"
CASE_SENSITIVE = "spark.sql.caseSensitive"
#: The session settings a job reads with: nanosecond timestamps as int64 counts, and column
#: names as written (``LEAD_ID`` beside ``lead_id`` is an extra column, as the local engine
#: reads it, not a clash).
READ_SETTINGS = {NANOS_AS_LONG: "true", CASE_SENSITIVE: "true"}
#: The characters Hadoop's path globbing gives a meaning to. Spark's reader expands them (a
#: folder ``exp[1]`` is read as ``exp1``; ``exp?`` lists the folder above), while the file
#: system calls that find the tables take a path as written: the two would see different
#: folders, so such a path is refused (``require_literal_path``).
GLOB_CHARACTERS = "*?[]{}\\"
_TIME_KINDS = frozenset({Kind.TIMESTAMP, Kind.DATE})
_NANOS = "TIMESTAMP(NANOS,"


@contextmanager
def read_settings(session: Any) -> Iterator[None]:
    """Apply ``READ_SETTINGS`` while the job runs (Spark reads them when it plans a read and
    when it runs one); the session's own values are put back afterwards."""
    before = {name: session.conf.get(name, None) for name in READ_SETTINGS}
    for name, value in READ_SETTINGS.items():
        session.conf.set(name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                session.conf.unset(name)
            else:
                session.conf.set(name, value)


class GlobPathError(ValueError):
    """A path that Spark's reader would take as a glob pattern; the message names the path,
    the character and what to do instead. Nothing has been read."""


def require_literal_path(path: str) -> str:
    """Refuse a path holding a character of ``GLOB_CHARACTERS``.

    Returns:
        ``path``.

    Raises:
        GlobPathError: naming the path and its first such character.
    """
    character = next((c for c in path if c in GLOB_CHARACTERS), None)
    if character is None:
        return path
    listed = " ".join(GLOB_CHARACTERS)
    raise GlobPathError(
        f"{path}: holds {character!r}, which Spark's reader takes as a glob pattern (it "
        f"would read the folders the pattern matches, not this one); rename the folder "
        f"(none of {listed} ) or use --engine local"
    )


#: parquet-mr's setting that checks each page's CRC where the writer stored one, as the
#: local engine does (``features.table_files.VERIFY_PAGE_CHECKSUMS``); given as a read
#: option, it reaches the reader's Hadoop configuration without changing the session's.
VERIFY_CHECKSUMS_OPTION = "parquet.page.verify-checksum.enabled"


def read_parquet(session: Any, path: str) -> Any:
    """A table's Parquet file or dataset as a Spark frame.

    Raises:
        GlobPathError: the path holds a glob character (``require_literal_path``).
        ContractError: Spark cannot read the file's schema (naming the column whose type it
            refuses, when the footer shows it).
    """
    require_literal_path(path)
    try:
        return session.read.option(VERIFY_CHECKSUMS_OPTION, "true").parquet(path)
    except Exception as error:  # pyspark's AnalysisException, without importing pyspark
        if type(error).__name__ != "AnalysisException":
            raise
        message = str(error).strip().splitlines()[0]
        raise ContractError(_unreadable(session, path, message)) from error


def _unreadable(session: Any, path: str, message: str) -> list[Problem]:
    """The columns whose type Spark's message names (``INT64 (TIME(NANOS,false))``, or
    the logical type alone: ``The data type TIME is not supported``), file by file."""
    why = f"Spark cannot read this column's Parquet type: {message}"
    for file in parquet_files(session, path):
        kinds = _footer_types(session, file)
        named = [name for name, kind in kinds.items() if kind in message]
        named = named or [name for name, kind in kinds.items() if _logical_named(kind, message)]
        if named:
            return [Problem(file, why, column=name) for name in named]
    return [Problem(path, f"Spark cannot read this Parquet file: {message}")]


def _logical_named(kind: str, message: str) -> bool:
    """Whether ``message`` names the logical type of ``kind`` (``TIME`` of
    ``INT64 (TIME(NANOS,false))``) as a word."""
    if " (" not in kind:
        return False
    logical = kind.split(" (", 1)[1].split("(", 1)[0].rstrip(")")
    return re.search(rf"\b{re.escape(logical)}\b", message) is not None


def nanosecond_columns(session: Any, table: str, path: str, frame: Any) -> set[str]:
    """The contract timestamp and date columns of ``frame`` typed as nanoseconds.

    Spark takes a table's schema from one of its files. A column it reads as ``long``
    (``read_settings``) may be a nanosecond timestamp or a plain integer, and the files of
    a dataset may type a column differently: then the footer of every file of the table is
    read (one small read per file), else none.

    Raises:
        ContractError: some files type the column as nanoseconds and others do not.
    """
    contract = TABLES_BY_NAME[table]
    times = {
        field.name: field.dataType.typeName()
        for field in frame.schema.fields
        if field.name in contract.column_names and contract.column(field.name).kind in _TIME_KINDS
    }
    files = parquet_files(session, path)
    if "long" not in times.values() and len(files) < 2:
        return set()
    kinds = {file: _footer_types(session, file) for file in files}
    nanos = {c for c in times if any(_NANOS in kinds[f].get(c, "") for f in files)}
    problems = [
        Problem(
            file,
            "typed as nanosecond timestamps in other files of the table but not here; "
            "write every file of a table with the same column types",
            column=column,
        )
        for column in sorted(nanos)
        for file in files
        if _NANOS not in kinds[file].get(column, _NANOS)
    ]
    if problems:
        raise ContractError(problems)
    return nanos


def microsecond_timestamp(name: str, functions: Any) -> Any:
    """Column ``name``, int64 nanoseconds, as a timestamp in microseconds, a rest rounded
    up (exact integer arithmetic: ``div`` truncates towards zero, which for a negative
    count is already up)."""
    whole = functions.expr(f"`{name}` div 1000")
    rest = functions.col(f"`{name}`") % 1000
    return functions.timestamp_micros(whole + functions.when(rest > 0, 1).otherwise(0))


def parquet_files(session: Any, path: str) -> list[str]:
    """The data files of a Parquet file or dataset, in path order (hidden files skipped)."""
    jvm = session.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    filesystem = hadoop_path.getFileSystem(session.sparkContext._jsc.hadoopConfiguration())
    listing = filesystem.listFiles(hadoop_path, True)
    found: list[str] = []
    while listing.hasNext():
        status = listing.next()
        if not status.getPath().getName().startswith(("_", ".")):
            found.append(status.getPath().toString())
    return sorted(found)


def _footer_types(session: Any, file: str) -> dict[str, str]:
    """Each top-level column of a Parquet file's footer, by its type as Spark names it
    (``INT64 (TIMESTAMP(NANOS,true))``, ``INT64``)."""
    jvm = session.sparkContext._jvm
    configuration = session.sparkContext._jsc.hadoopConfiguration()
    hadoop = jvm.org.apache.parquet.hadoop
    source = hadoop.util.HadoopInputFile.fromPath(
        jvm.org.apache.hadoop.fs.Path(file), configuration
    )
    reader = hadoop.ParquetFileReader.open(source)
    try:
        schema = reader.getFooter().getFileMetaData().getSchema()
    finally:
        reader.close()
    return dict(_described(schema.getFields()))


def _described(fields: Iterable[Any]) -> Iterator[tuple[str, str]]:
    for field in fields:
        if not field.isPrimitive():
            yield field.getName(), "group"
            continue
        physical = str(field.asPrimitiveType().getPrimitiveTypeName().name())
        logical = field.getLogicalTypeAnnotation()
        yield field.getName(), physical if logical is None else f"{physical} ({logical})"
