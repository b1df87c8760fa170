"""The Spark engine: the same chunk scoring, distributed with PySpark over any path Spark reads.

Every table is read as Parquet (a ``<table>.parquet`` file or a ``<table>/`` dataset, on any
file system Spark knows: local, HDFS, S3, ...). Each row keeps its number in its table
(``_metadata.row_index`` plus the sizes of the files before it), so rejected rows are
numbered as the local engine numbers them. Rows are grouped into buckets by a hash of
``lead_id`` (a lead's rows always meet; rows sharing a duplicated primary key are sent to
the bucket of the key's first row), and each bucket goes through
``serving.chunk_scoring.score_chunk`` in a Python worker with ``groupBy().applyInArrow``:
the loader's checks, the feature engine, the model and the routing policy, unchanged.
The driver collects the scored rows in lead order and writes the output exactly as the
local engine does.

PySpark is an optional extra (``pip install 'srl-rebound[spark]'``); it is imported only
when this engine runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from features.contract import TABLES, TABLES_BY_NAME
from features.predictor import BOOSTER_FILE, METADATA_FILE, ReconversionModel
from features.problems import ContractError, Problem
from serving.batch import (
    BatchError,
    BatchRequest,
    BatchSummary,
    JobContext,
    fail,
    finish,
    micros,
    open_job,
)
from serving.batch_local import ChunkFailure, ChunkReport
from serving.batch_output import LEAD_ROW_COLUMN, REJECTS_SCHEMA, part_schema, sort_rejects
from serving.batch_progress import Progress
from serving.chunk_scoring import ChunkOutcome, ChunkSettings, score_chunk
from serving.export_chunks import ROW_COLUMN, latest_timestamp_us
from serving.export_reading import UNUSED_COLUMNS, timestamp_columns
from serving.policy import RoutingPolicy

logger = logging.getLogger(__name__)

INSTALL_HINT = "the Spark engine needs PySpark: pip install 'srl-rebound[spark]'"
TABLE_COLUMN = "_table"
BUCKET_COLUMN = "_bucket"
KIND_COLUMN = "_kind"
LATEST_COLUMN = "_latest_us"
WARNINGS_COLUMN = "_warnings"
_SEPARATOR = "__"
_MODELS: dict[str, ReconversionModel] = {}


def spark_session(master: str | None = None) -> Any:
    """A SparkSession for the job (the active one, or a new one; UTC session time zone).

    Raises:
        RuntimeError: PySpark is not installed.
    """
    sql = _pyspark_sql()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = sql.SparkSession.builder.appName("srl-score")
    if master:
        builder = builder.master(master)
    return builder.config("spark.sql.session.timeZone", "UTC").getOrCreate()


def run_spark_batch(request: BatchRequest, progress: Progress, spark: Any = None) -> BatchSummary:
    """Run the batch job on Spark (see ``serving.batch.run_batch`` for the contract).

    Raises:
        BatchError: the Spark job failed; nothing was written at the output path.
        ContractError: a required table or column is missing.
    """
    session = spark if spark is not None else spark_session()
    located = _locate(session, request.data)
    context = open_job(request, _listing_fingerprint(session, located))
    progress.start(1, 0)
    try:
        tables = {t: _read_table(session, t, p, context) for t, p in located.items()}
        input_rows = {t: s.rows for t, s in tables.items()}
        outcome = _score(session, context, tables)
    except (ContractError, BatchError):
        raise
    except Exception as error:  # a failed Spark job is reported like a failed chunk
        logger.error("batch spark_failed error=%s", type(error).__name__, exc_info=error)
        raise BatchError(fail(context, [_failure(error)])) from error
    finally:
        progress.close()
    progress.advance(outcome.scored.num_rows)
    return finish(
        context,
        outcome.as_of_us,
        iter([outcome.scored]),
        outcome.rejects,
        outcome.reports,
        input_rows,
    )


@dataclass(frozen=True)
class _SparkOutcome:
    as_of_us: int
    scored: pa.Table
    rejects: pa.Table
    reports: list[ChunkReport]


def _score(session: Any, context: JobContext, tables: dict[str, SparkTable]) -> _SparkOutcome:
    buckets = max(1, -(-tables["leads"].rows // context.request.chunk_leads))
    rows = _bucketed({t: s.frame for t, s in tables.items()}, buckets)
    requested = context.request.as_of
    as_of_us = micros(requested) if requested is not None else _export_end(tables)
    outcome = _score_at(session, context, rows, as_of_us)
    latest = max((r.latest_us for r in outcome.reports if r.latest_us is not None), default=None)
    if requested is None and latest is not None and latest != as_of_us:
        logger.warning("batch export_end_moved (its latest rows were rejected); scoring again")
        outcome = _score_at(session, context, rows, latest)
    return outcome


def _export_end(tables: dict[str, SparkTable]) -> int:
    """The latest timestamp that parses anywhere (the provisional export end), in µs."""
    latest = [s.latest_us for s in tables.values() if s.latest_us is not None]
    if not latest:
        raise ContractError([Problem("export", "no timestamps found in any table")])
    return max(latest)


def _score_at(session: Any, context: JobContext, rows: Any, as_of_us: int) -> _SparkOutcome:
    functions = _pyspark_sql().functions
    settings = context.settings(as_of_us)
    scorer = BucketScorer(
        _broadcast_model(session, context), context.policy, settings, _table_columns(rows)
    )
    transport = transport_schema(settings.reasons != "none")
    result = rows.groupBy(BUCKET_COLUMN).applyInArrow(
        _bucket_function(scorer), spark_ddl(transport)
    )
    result = result.persist()
    try:
        kind = functions.col(KIND_COLUMN)
        scored_names = part_schema(settings.reasons != "none").names
        scored = result.where(kind == "scored").select(*scored_names).orderBy(LEAD_ROW_COLUMN)
        rejects = result.where(kind == "reject").select(
            *(f"reject_{n}" for n in REJECTS_SCHEMA.names)
        )
        latest = result.where(kind == "latest").select(
            "rows", "rejected", LATEST_COLUMN, WARNINGS_COLUMN
        )
        return _SparkOutcome(
            as_of_us,
            from_transport(scored.toArrow(), part_schema(settings.reasons != "none")),
            sort_rejects([_renamed_rejects(rejects.toArrow())]),
            _reports(latest.toArrow()),
        )
    finally:
        result.unpersist()


@dataclass(frozen=True)
class BucketScorer:
    """Scores one bucket of rows in a Spark Python worker (picklable; the model is broadcast).

    Attributes:
        model_files: a Spark broadcast of the model's files (name to bytes) and fingerprint.
        policy: the routing policy.
        settings: the job's chunk settings.
        columns: each table's prefixed columns in the bucketed frame.
    """

    model_files: Any
    policy: RoutingPolicy
    settings: ChunkSettings
    columns: dict[str, tuple[str, ...]]

    def score(self, rows: pa.Table) -> pa.Table:
        """Split the bucket into its tables, score it and encode the outcome for Spark."""
        raw = split_tables(rows, self.columns)
        outcome = score_chunk(
            raw, _worker_model(self.model_files.value), self.policy, self.settings
        )
        return encode_outcome(outcome, self.settings.reasons != "none")


def _bucket_function(scorer: BucketScorer) -> Any:
    """A one-argument function, as ``applyInArrow`` expects (Spark counts parameters)."""

    def score_bucket(rows: pa.Table) -> pa.Table:
        return scorer.score(rows)

    return score_bucket


def split_tables(rows: pa.Table, columns: dict[str, tuple[str, ...]]) -> dict[str, pa.Table]:
    """The bucket's rows of each table, with contract column names and ``_row``, by row number."""
    tables: dict[str, pa.Table] = {}
    table_names = rows.column(TABLE_COLUMN).to_numpy(zero_copy_only=False)
    for table, prefixed in columns.items():
        mine = rows.filter(pa.array(table_names == table))
        mine = mine.take(pa.array(np.argsort(mine.column(ROW_COLUMN).to_numpy(), kind="stable")))
        names = [c.split(_SEPARATOR, 1)[1] for c in prefixed]
        tables[table] = mine.select([*prefixed, ROW_COLUMN]).rename_columns([*names, ROW_COLUMN])
    return tables


def transport_schema(with_reasons: bool) -> pa.Schema:
    """The bucket function's output: scored rows, rejected rows and one report row, tagged."""
    scored = [_plain(f) for f in part_schema(with_reasons)]
    rejects = [pa.field(f"reject_{f.name}", f.type) for f in REJECTS_SCHEMA]
    report = [
        pa.field("rows", pa.int64()),
        pa.field("rejected", pa.int64()),
        pa.field(LATEST_COLUMN, pa.int64()),
        pa.field(WARNINGS_COLUMN, pa.string()),
    ]
    return pa.schema([pa.field(KIND_COLUMN, pa.string()), *scored, *rejects, *report])


def encode_outcome(outcome: ChunkOutcome, with_reasons: bool) -> pa.Table:
    """One chunk's outcome as rows of ``transport_schema``."""
    schema = transport_schema(with_reasons)
    scored = _tagged(
        outcome.scored.cast(pa.schema([_plain(f) for f in outcome.scored.schema])), "scored"
    )
    rejects = _tagged(
        outcome.rejects.rename_columns([f"reject_{n}" for n in REJECTS_SCHEMA.names]), "reject"
    )
    report = pa.table(
        {
            KIND_COLUMN: ["latest"],
            "rows": [outcome.scored.num_rows],
            "rejected": [outcome.rejects.num_rows],
            LATEST_COLUMN: pa.array([outcome.latest_us], pa.int64()),
            WARNINGS_COLUMN: [json.dumps(list(outcome.warnings))],
        }
    )
    return pa.concat_tables([_pad(t, schema) for t in (scored, rejects, report)])


def from_transport(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Scored rows collected from Spark, back to the output types (times, dates)."""
    return table.select(schema.names).cast(schema)


def spark_ddl(schema: pa.Schema) -> str:
    """A Spark DDL string for an Arrow schema of plain types."""
    names = {
        pa.string(): "string",
        pa.int64(): "bigint",
        pa.int32(): "int",
        pa.float64(): "double",
        pa.bool_(): "boolean",
    }
    return ", ".join(f"`{f.name}` {names[f.type]}" for f in schema)


def _plain(field: pa.Field) -> pa.Field:
    """Times as int64 microseconds and dates as int32 days: Spark-neutral types."""
    if pa.types.is_timestamp(field.type):
        return pa.field(field.name, pa.int64())
    if pa.types.is_date(field.type):
        return pa.field(field.name, pa.int32())
    return field


def _tagged(table: pa.Table, kind: str) -> pa.Table:
    return table.append_column(KIND_COLUMN, pa.array([kind] * table.num_rows, pa.string()))


def _pad(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _renamed_rejects(table: pa.Table) -> pa.Table:
    return table.rename_columns(list(REJECTS_SCHEMA.names)).cast(REJECTS_SCHEMA)


def _reports(table: pa.Table) -> list[ChunkReport]:
    rows = table.to_pylist()
    return [
        ChunkReport(
            -1, r["rows"], r["rejected"], r[LATEST_COLUMN], tuple(json.loads(r[WARNINGS_COLUMN]))
        )
        for r in rows
    ]


def _failure(error: BaseException) -> ChunkFailure:
    message = str(error).strip().splitlines()
    return ChunkFailure(-1, type(error).__name__, message[0][:300] if message else "")


def _worker_model(files: dict[str, Any]) -> ReconversionModel:
    """The broadcast model, loaded once per Python worker."""
    fingerprint = str(files["fingerprint"])
    if fingerprint not in _MODELS:
        folder = Path(tempfile.mkdtemp(prefix="srl-spark-model-"))
        for name in (BOOSTER_FILE, METADATA_FILE):
            (folder / name).write_bytes(files[name])
        _MODELS[fingerprint] = ReconversionModel.load(folder, num_threads=1)
    return _MODELS[fingerprint]


def _broadcast_model(session: Any, context: JobContext) -> Any:
    folder = context.work.model
    files: dict[str, Any] = {
        name: (folder / name).read_bytes() for name in (BOOSTER_FILE, METADATA_FILE)
    }
    files["fingerprint"] = context.manifest.identity.model_fingerprint
    return session.sparkContext.broadcast(files)


def _locate(session: Any, data: str) -> dict[str, str]:
    """The Parquet path of each table under ``data`` (a file or a dataset directory)."""
    located: dict[str, str] = {}
    problems: list[Problem] = []
    base = data.rstrip("/")
    for table in TABLES:
        found = next(
            (
                p
                for p in (f"{base}/{table.name}.parquet", f"{base}/{table.name}")
                if _exists(session, p)
            ),
            None,
        )
        if found is not None:
            located[table.name] = found
        elif _exists(session, f"{base}/{table.name}.csv"):
            problems.append(
                Problem(
                    f"{base}/{table.name}.csv",
                    "the Spark engine reads Parquet; use --engine local for CSV",
                )
            )
        elif not table.optional:
            problems.append(
                Problem(f"{base}/{table.name}.parquet", f"required table {table.name!r} is missing")
            )
    if problems:
        raise ContractError(problems)
    return located


def _filesystem(session: Any, path: str) -> tuple[Any, Any]:
    jvm = session.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(session.sparkContext._jsc.hadoopConfiguration()), hadoop_path


def _exists(session: Any, path: str) -> bool:
    filesystem, hadoop_path = _filesystem(session, path)
    return bool(filesystem.exists(hadoop_path))


def _listing_fingerprint(session: Any, located: dict[str, str]) -> str:
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


def _read_table(session: Any, table: str, path: str, context: JobContext) -> SparkTable:
    """One table with the columns the job reads, prefixed, numbered and tagged."""
    functions = _pyspark_sql().functions
    frame = session.read.parquet(path)
    _check_required(table, path, frame.columns)
    wanted = _wanted(table, context)
    kept = [c for c in frame.columns if c in wanted]
    files = _file_stats(frame, timestamp_columns(table, kept), functions)
    row = functions.col("_metadata.row_index") + _file_offsets(files, functions)
    selected = frame.select(
        *(functions.col(f"`{c}`").alias(f"{table}{_SEPARATOR}{c}") for c in kept),
        functions.lit(table).alias(TABLE_COLUMN),
        row.cast("bigint").alias(ROW_COLUMN),
        functions.col("lead_id").cast("string").alias("_lead_id"),
        *_key(table, functions),
    )
    latest = [f[2] for f in files if f[2] is not None]
    return SparkTable(selected, sum(f[1] for f in files), max(latest, default=None))


def _file_stats(frame: Any, stamps: list[str], functions: Any) -> list[tuple[str, int, int | None]]:
    """Rows and latest parseable timestamp of each file of a table, in path order."""
    source = frame.select(
        functions.col("_metadata.file_path").alias("file"),
        *(functions.col(f"`{c}`") for c in stamps),
    )
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


def _key(table: str, functions: Any) -> list[Any]:
    key = TABLES_BY_NAME[table].primary_key
    if key is None or table == "leads":
        return [functions.lit(None).cast("string").alias("_key")]
    return [functions.col(key).cast("string").alias("_key")]


def _wanted(table: str, context: JobContext) -> set[str]:
    wanted = set(TABLES_BY_NAME[table].column_names) - UNUSED_COLUMNS.get(table, frozenset())
    if table == "leads":
        custom = context.model.config.custom_columns
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


def _bucketed(frames: dict[str, Any], buckets: int) -> Any:
    """All tables in one frame, each row tagged with its bucket (duplicate keys kept together)."""
    functions = _pyspark_sql().functions
    tagged = [
        _gather_duplicates(
            f.withColumn(
                BUCKET_COLUMN,
                functions.pmod(functions.xxhash64("_lead_id"), functions.lit(buckets)),
            ),
            functions,
        )
        for f in frames.values()
    ]
    union = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), tagged)
    return union.drop("_lead_id", "_key")


def _gather_duplicates(frame: Any, functions: Any) -> Any:
    """Send every row whose primary key repeats to the bucket of the key's first row."""
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
    return joined.withColumn(BUCKET_COLUMN, functions.coalesce("_first", BUCKET_COLUMN)).drop(
        "_first"
    )


def _table_columns(rows: Any) -> dict[str, tuple[str, ...]]:
    columns: dict[str, list[str]] = {}
    for name in rows.columns:
        if _SEPARATOR in name and not name.startswith("_"):
            table = name.split(_SEPARATOR, 1)[0]
            columns.setdefault(table, []).append(name)
    return {t: tuple(c) for t, c in columns.items()}


def _pyspark_sql() -> Any:
    try:
        import pyspark.sql
        import pyspark.sql.functions
    except ModuleNotFoundError as error:
        raise RuntimeError(INSTALL_HINT) from error
    return pyspark.sql
