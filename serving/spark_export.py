"""Reading an export with Spark: each table's rows numbered, tagged and grouped into buckets.

Used by the Spark engine (``serving.spark``). Each table is read as Parquet; every row keeps
its number in its table (``_metadata.row_index`` plus the rows of the files before it, in
path order), so rejected rows are numbered as the local engine numbers them. All tables
are put in one frame, their columns prefixed with the table's name, and each row gets a
bucket from a hash of its ``lead_id`` read loosely (``features.text.loose_id``, as the
local engine routes such an id, ``export_chunks``); rows sharing a repeated primary key are sent to
the bucket of the key's first row, so the loader's checks see them together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.coercion import empty_table_problem
from features.config import FeatureConfig
from features.contract import TABLES, TABLES_BY_NAME, Table
from features.problems import ContractError, Problem
from features.table_names import (
    absent_table_warnings,
    both_formats_problem,
    unread_table_problems,
)
from features.text import LOOSE_FROM, LOOSE_TO, SURROUNDING_SPACES, texts_of
from serving.export_chunks import MOVED_COLUMN, ROW_COLUMN, latest_timestamp_us
from serving.export_reading import UNUSED_COLUMNS, timestamp_columns
from serving.spark_parquet import microsecond_timestamp, nanosecond_columns, read_parquet

INSTALL_HINT = "the Spark engine needs PySpark: pip install 'srl-rebound[spark]'"
#: What the engine takes as a table, for ``features.table_names.unread_table_problems``.
READ_TABLE_PATHS = "{table}.parquet (a file or a dataset directory) or a {table}/ dataset"
TABLE_COLUMN = "_table"
BUCKET_COLUMN = "_bucket"
SEPARATOR = "__"


def locate_tables(session: Any, data: str) -> tuple[dict[str, str], list[str]]:
    """The Parquet path of each table under ``data`` (a file or a dataset directory), and
    warnings for absent tables whose absence changes who is contacted, as the loader gives
    them (``features.table_names.absent_table_warnings``; one listing of ``data``).

    A table is read from the first of ``<table>.parquet`` and ``<table>/`` that exists; a
    second copy (the other one, ``<table>.csv`` beside it, or any entry that plainly holds
    the table) is refused with the local engine's message, never skipped.

    Raises:
        ContractError: a required table is missing, a table is CSV or has a second copy,
            or an entry plainly holds a table under a name not read (``features.table_names``).
    """
    base = data.rstrip("/")
    problems: list[Problem] = []
    located: dict[str, str] = {}
    for table in TABLES:
        found, table_problems = _locate(session, base, table)
        problems += table_problems
        if found is not None:
            located[table.name] = found
    present = {table: _name(path) for table, path in located.items()}
    unread = _unread_entries(session, base, set(present.values()))
    problems = unread_table_problems(base, unread, READ_TABLE_PATHS, present) + problems
    if problems:
        raise ContractError(problems)
    return located, absent_table_warnings(located, unread, READ_TABLE_PATHS)


def _locate(session: Any, base: str, table: Table) -> tuple[str | None, list[Problem]]:
    """The path ``table`` is read from (the first of ``<table>.parquet`` and ``<table>/``
    that exists), and the problems of its ``<table>.csv`` or of its absence."""
    candidates = (f"{base}/{table.name}.parquet", f"{base}/{table.name}")
    found = next((p for p in candidates if _exists(session, p)), None)
    csv = f"{base}/{table.name}.csv"
    if not _exists(session, csv):
        if found is None and not table.optional:
            return None, [_missing(base, table.name)]
        return found, []
    if found is not None:  # the local engine's rule and words for a table in both formats
        return found, [both_formats_problem(base, _name(found), _name(csv))]
    return None, [Problem(csv, "the Spark engine reads Parquet; use --engine local for CSV")]


def _missing(base: str, table: str) -> Problem:
    return Problem(f"{base}/{table}.parquet", f"required table {table!r} is missing")


def _name(path: str) -> str:
    """The last part of a path (``consent.parquet`` of ``s3a://bucket/export/consent.parquet``)."""
    return path.rsplit("/", 1)[-1]


def _unread_entries(session: Any, base: str, taken: set[str]) -> list[str]:
    """Names of the entries of ``base`` that no table is read from (``taken``), a second
    ``<table>.parquet`` or ``<table>/`` included; a ``<table>.csv`` has its own messages."""
    if not _exists(session, base):
        return []
    csv = {f"{t.name}.csv" for t in TABLES}
    filesystem, hadoop_path = _filesystem(session, base)
    names = [status.getPath().getName() for status in filesystem.listStatus(hadoop_path)]
    return [name for name in names if name not in taken and name not in csv]


def _filesystem(session: Any, path: str) -> tuple[Any, Any]:
    jvm = session.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(session.sparkContext._jsc.hadoopConfiguration()), hadoop_path


def _exists(session: Any, path: str) -> bool:
    filesystem, hadoop_path = _filesystem(session, path)
    return bool(filesystem.exists(hadoop_path))


def listing_fingerprint(session: Any, located: dict[str, str]) -> str:
    """A SHA-256 of every input file's path, size and modification time (not its bytes:
    a cluster's export is too big to read twice)."""
    digest = hashlib.sha256()
    for table in sorted(located):
        for path, size, modified in _files(session, located[table]):
            digest.update(f"{table}:{path}:{size}:{modified}\n".encode())
    return digest.hexdigest()


def _files(session: Any, path: str) -> Iterator[tuple[str, int, int]]:
    filesystem, hadoop_path = _filesystem(session, path)
    listing = filesystem.listFiles(hadoop_path, True)
    found = []
    while listing.hasNext():
        status = listing.next()
        name = status.getPath().getName()
        if not name.startswith(("_", ".")):
            found.append(
                (
                    status.getPath().toString(),
                    int(status.getLen()),
                    int(status.getModificationTime()),
                )
            )
    yield from sorted(found)


@dataclass(frozen=True)
class SparkTable:
    """One table as the job reads it.

    Attributes:
        frame: the kept columns (prefixed with the table name), ``_table``, ``_row``,
            ``_lead_id`` and ``_key`` (the primary key as text).
        rows: rows in the table.
        latest_us: its latest timestamp that parses (None when none).
    """

    frame: Any
    rows: int
    latest_us: int | None


def read_tables(
    session: Any, located: dict[str, str], config: FeatureConfig
) -> dict[str, SparkTable]:
    """Every located table (``read_table``), the problems of all of them raised at once (as
    the local engine names each table without rows, not only the first).

    Raises:
        ContractError: every table's problems (a required column missing, a Parquet type
            Spark cannot read, a required table without rows).
    """
    tables: dict[str, SparkTable] = {}
    problems: list[Problem] = []
    for table, path in located.items():
        try:
            tables[table] = read_table(session, table, path, config)
        except ContractError as error:
            problems += error.problems
    if problems:
        raise ContractError(problems)
    return tables


def read_table(session: Any, table: str, path: str, config: FeatureConfig) -> SparkTable:
    """One table with the columns the job reads, prefixed, numbered and tagged."""
    functions = pyspark_sql().functions
    frame = read_parquet(session, path)
    _check_required(table, path, frame.columns)
    wanted = _wanted(table, config)
    kept = [c for c in frame.columns if c in wanted]
    values = _values(kept, nanosecond_columns(session, table, path, frame), functions)
    files = _file_stats(frame, [values[c] for c in timestamp_columns(table, kept)], functions)
    row = functions.col("_metadata.row_index") + _file_offsets(files, functions)
    selected = frame.select(
        *(values[c].alias(f"{table}{SEPARATOR}{c}") for c in kept),
        functions.lit(table).alias(TABLE_COLUMN),
        row.cast("bigint").alias(ROW_COLUMN),
        _as_text(frame, "lead_id", functions).alias("_lead_id"),
        *_key(frame, table, functions),
    )
    latest = [f[2] for f in files if f[2] is not None]
    rows = sum(f[1] for f in files)
    empty = empty_table_problem(TABLES_BY_NAME[table], rows, path)
    if empty is not None:
        raise ContractError([empty])
    return SparkTable(selected, rows, max(latest, default=None))


def _values(kept: list[str], nanoseconds: set[str], functions: Any) -> dict[str, Any]:
    """Each kept column as the job reads it: a nanosecond timestamp (read as its count,
    ``serving.spark_parquet``) in microseconds, rounded up as the local engine does."""
    return {
        c: microsecond_timestamp(c, functions) if c in nanoseconds else functions.col(f"`{c}`")
        for c in kept
    }


def _file_stats(frame: Any, stamps: list[Any], functions: Any) -> list[tuple[str, int, int | None]]:
    """Rows and latest parseable timestamp (of the ``stamps`` columns) of each file of a
    table, in path order."""
    source = frame.select(functions.col("_metadata.file_path").alias("file"), *stamps)
    batches = source.mapInArrow(_batch_stats, "file string, rows bigint, latest bigint")
    totals = batches.groupBy("file").agg(
        functions.sum("rows").alias("rows"), functions.max("latest").alias("latest")
    )
    return [(r["file"], int(r["rows"]), r["latest"]) for r in totals.orderBy("file").collect()]


def _batch_stats(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Per file in each batch: its rows and its latest parseable timestamp."""
    for batch in batches:
        table = pa.Table.from_batches([batch])
        files = table.column("file").to_numpy(zero_copy_only=False)
        for name in np.unique(files):
            mine = table.filter(pa.array(files == name))
            stamps = [latest_timestamp_us(mine.column(i)) for i in range(1, mine.num_columns)]
            present = [v for v in stamps if v is not None]
            yield pa.record_batch(
                {
                    "file": pa.array([str(name)]),
                    "rows": pa.array([mine.num_rows], pa.int64()),
                    "latest": pa.array([max(present) if present else None], pa.int64()),
                }
            )


def _key(frame: Any, table: str, functions: Any) -> list[Any]:
    key = TABLES_BY_NAME[table].primary_key
    if key is None or table == "leads":
        return [functions.lit(None).cast("string").alias("_key")]
    return [_as_text(frame, key, functions).alias("_key")]


def _as_text(frame: Any, name: str, functions: Any) -> Any:
    """An id column as text by the rule every path writes ids with (``features.text``), so
    that rows meet their lead's bucket whatever the id's type: Spark alone writes ``12.0``,
    ``12.00`` and ``1.0E-5`` where the rule writes ``12``, ``12`` and ``1e-05``. Float and
    decimal columns (rare for ids) go through the rule itself in a pandas UDF."""
    column = functions.col(f"`{name}`")
    kind = frame.schema[name].dataType.typeName()
    if kind not in ("double", "float", "decimal"):
        return column.cast("string")
    return functions.pandas_udf(_rule_texts, "string")(column)


def _rule_texts(values: pd.Series) -> pd.Series:
    """``features.text.texts_of`` over one batch of a numeric id column (missing where a
    value is not text: NaN, infinite)."""
    texts = texts_of(values)[0]
    return texts.astype(object).where(texts.notna(), None)


def _wanted(table: str, config: FeatureConfig) -> set[str]:
    wanted = set(TABLES_BY_NAME[table].column_names) - UNUSED_COLUMNS.get(table, frozenset())
    if table == "leads":
        custom = config.custom_columns
        wanted |= {*custom.numeric, *custom.categorical}
    return wanted


def _check_required(table: str, path: str, columns: list[str]) -> None:
    missing = [c for c in TABLES_BY_NAME[table].required_columns if c not in columns]
    if missing:
        raise ContractError(
            [Problem(path, "required column is missing", column=c) for c in missing]
        )


def _file_offsets(files: list[tuple[str, int, int | None]], functions: Any) -> Any:
    """Rows in the files before each row's file (files in path order), as a column."""
    if len(files) <= 1:
        return functions.lit(0)
    starts = np.concatenate([[0], np.cumsum([f[1] for f in files])[:-1]])
    pairs = [
        x
        for f, start in zip(files, starts, strict=True)
        for x in (functions.lit(f[0]), functions.lit(int(start)))
    ]
    return functions.element_at(functions.create_map(*pairs), functions.col("_metadata.file_path"))


def bucketed(frames: dict[str, Any], buckets: int) -> Any:
    """All tables in one frame, each row tagged with its bucket (a hash of its ``lead_id``
    read loosely; duplicate keys kept together) and whether that took it
    away from its lead's bucket (``export_chunks.MOVED_COLUMN``; whether its lead exists
    is left to ``first_lead_rows``)."""
    functions = pyspark_sql().functions
    # Hashed as read loosely (``features.text.loose_id``: the same translation, then the
    # same trim), as the local engine routes an id that names a lead only read loosely
    # (``export_chunks``): such a row meets that lead in its bucket.
    loose = functions.translate(functions.col("_lead_id"), LOOSE_FROM, LOOSE_TO)
    lead = functions.btrim(loose, functions.lit(SURROUNDING_SPACES))
    bucket = functions.pmod(functions.xxhash64(lead), functions.lit(buckets))
    tagged = [
        _gather_duplicates(f.withColumn(BUCKET_COLUMN, bucket), functions) for f in frames.values()
    ]
    union = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), tagged)
    return union.drop("_lead_id", "_key")


def _gather_duplicates(frame: Any, functions: Any) -> Any:
    """Send every row whose primary key repeats to the bucket of the key's first row,
    marking those that leave their lead's bucket."""
    first = (
        frame.where(functions.col("_key").isNotNull())
        .groupBy("_key")
        .agg(
            functions.count("*").alias("_n"),
            functions.min_by(BUCKET_COLUMN, ROW_COLUMN).alias("_first"),
        )
        .where(functions.col("_n") > 1)
        .select("_key", "_first")
    )
    joined = frame.join(first, on="_key", how="left")
    moved = functions.coalesce(
        functions.col("_first") != functions.col(BUCKET_COLUMN), functions.lit(False)
    )
    return (
        joined.withColumn(MOVED_COLUMN, moved)
        .withColumn(BUCKET_COLUMN, functions.coalesce("_first", BUCKET_COLUMN))
        .drop("_first")
    )


def first_lead_rows(session: Any, leads: SparkTable, lead_ids: list[str]) -> dict[str, int]:
    """The first row (0-based) of each of ``lead_ids`` in the leads table; ids not there are
    left out (``chunk_scoring.LeadLocator``)."""
    if not lead_ids:
        return {}
    functions = pyspark_sql().functions
    wanted = session.createDataFrame([(lead,) for lead in lead_ids], "_lead_id string")
    found = (
        leads.frame.join(wanted, on="_lead_id")
        .groupBy("_lead_id")
        .agg(functions.min(ROW_COLUMN).alias("row"))
    )
    return {r["_lead_id"]: int(r["row"]) for r in found.collect()}


def table_columns(rows: Any) -> dict[str, tuple[str, ...]]:
    columns: dict[str, list[str]] = {}
    for name in rows.columns:
        if SEPARATOR in name and not name.startswith("_"):
            table = name.split(SEPARATOR, 1)[0]
            columns.setdefault(table, []).append(name)
    return {t: tuple(c) for t, c in columns.items()}


def pyspark_sql() -> Any:
    try:
        import pyspark.sql
        import pyspark.sql.functions
    except ModuleNotFoundError as error:
        raise RuntimeError(INSTALL_HINT) from error
    return pyspark.sql
