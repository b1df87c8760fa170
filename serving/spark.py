"""The Spark engine: the same chunk scoring, distributed with PySpark over any path Spark reads.

Every table is read as Parquet (a ``<table>.parquet`` file or a ``<table>/`` dataset, on any
file system Spark knows: local, HDFS, S3, ...) and grouped into buckets of leads by
``serving.spark_export``. Each bucket goes through
``serving.chunk_scoring.score_chunk`` in a Python worker with ``groupBy().applyInArrow``:
the loader's checks, the feature engine, the model and the routing policy, unchanged.
The driver collects the scored rows in lead order and writes the output exactly as the
local engine does.

PySpark is an optional extra (``pip install 'srl-rebound[spark]'``); it is imported only
when this engine runs.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from features.predictor import BOOSTER_FILE, METADATA_FILE, ReconversionModel
from features.problems import ContractError, Problem
from features.table_files import require_utf8_text
from serving.batch import END_MOVES, finish, moved_export_end, open_job
from serving.batch_job import (
    BatchError,
    BatchRequest,
    BatchSummary,
    JobContext,
    JobRecord,
    ScoredJob,
    iso,
    micros,
)
from serving.batch_local import ChunkFailure, ChunkReport
from serving.batch_output import (
    CHUNK_REJECTS_SCHEMA,
    LEAD_ROW_COLUMN,
    part_schema,
    sort_rejects,
)
from serving.batch_progress import Progress
from serving.batch_signals import signal_received, stop_behind
from serving.batch_summary import fail
from serving.chunk_scoring import ChunkSettings, score_chunk
from serving.export_chunks import MOVED_COLUMN, ROW_COLUMN
from serving.export_reading import NO_EVENT_TIME
from serving.policy import RoutingPolicy
from serving.spark_export import (
    BUCKET_COLUMN,
    SEPARATOR,
    TABLE_COLUMN,
    SparkTable,
    bucketed,
    first_lead_rows,
    listing_fingerprint,
    locate_tables,
    pyspark_sql,
    read_tables,
    table_columns,
)
from serving.spark_parquet import read_settings
from serving.spark_transport import (
    EVENT_DAYS_COLUMN,
    KIND_COLUMN,
    LATEST_COLUMN,
    ROW_NOTES_COLUMN,
    WARNINGS_COLUMN,
    encode_outcome,
    from_transport,
    renamed_rejects,
    reports,
    spark_ddl,
    transport_schema,
)

logger = logging.getLogger(__name__)

_MODELS: dict[str, ReconversionModel] = {}


def spark_session(master: str | None = None) -> Any:
    """A SparkSession for the job (the active one, or a new one; UTC session time zone).

    Raises:
        RuntimeError: PySpark is not installed.
    """
    sql = pyspark_sql()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = sql.SparkSession.builder.appName("srl-score")
    if master:
        builder = builder.master(master)
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    return builder.config("spark.sql.session.timeZone", "UTC").getOrCreate()


def run_spark_batch(
    request: BatchRequest, progress: Progress, spark: Any = None, record: JobRecord | None = None
) -> BatchSummary:
    """Run the batch job on Spark (see ``serving.batch.run_batch`` for the contract).

    Args:
        request: the run's arguments (``engine`` is ``spark``).
        progress: where progress goes.
        spark: the SparkSession (default: the active one, or a new one).
        record: where the run notes what it resolved, for a failed summary.

    Raises:
        BatchError: the Spark job failed; nothing was written at the output path.
        ContractError: a required table or column is missing, or a column's Parquet type
            cannot be read (``serving.spark_parquet``).
    """
    session = spark if spark is not None else spark_session()
    with read_settings(session):
        return _run(session, request, progress, record or JobRecord())


def _run(
    session: Any, request: BatchRequest, progress: Progress, record: JobRecord
) -> BatchSummary:
    located, absent = locate_tables(session, request.data)
    notes = tuple(absent)
    context = open_job(request, listing_fingerprint(session, located), record)
    progress.start(1, 0)
    try:
        tables = read_tables(session, located, context.model.config)
        input_rows = {t: s.rows for t, s in tables.items()}
        outcome = _score(session, context, tables, notes)
    except (ContractError, BatchError):
        raise
    except Exception as error:  # a failed Spark job is reported like a failed chunk
        stop = stop_behind(error) or signal_received()
        if stop is not None:  # a signal, raised in PySpark's collect, that PySpark wrapped
            raise stop from None
        logger.error("batch spark_failed error=%s", type(error).__name__, exc_info=error)
        raise BatchError(fail(context, [_failure(error)])) from error
    finally:
        progress.close()
    progress.advance(outcome.scored.num_rows)
    leads = tables["leads"]
    scored = ScoredJob(
        outcome.as_of_us,
        iter([outcome.scored]),
        outcome.rejects,
        outcome.reports,
        input_rows,
        lambda lead_ids: first_lead_rows(session, leads, lead_ids),
    )
    return finish(context, scored)


@dataclass(frozen=True)
class _SparkOutcome:
    as_of_us: int
    scored: pa.Table
    rejects: pa.Table
    reports: list[ChunkReport]


def _score(
    session: Any, context: JobContext, tables: dict[str, SparkTable], notes: tuple[str, ...]
) -> _SparkOutcome:
    buckets = max(1, -(-tables["leads"].rows // context.request.chunk_leads))
    context.chunks.update(total=buckets, resumed=0)
    rows = bucketed({t: s.frame for t, s in tables.items()}, buckets)
    requested = context.request.as_of
    as_of_us = micros(requested) if requested is not None else _export_end(tables)
    outcome = _score_at(session, context, rows, as_of_us, notes)
    if requested is not None:
        return outcome
    for _ in range(END_MOVES):  # the export's end as the loader finds it
        strays_set_aside = context.manifest.stray_cut is not None
        moved = moved_export_end(as_of_us, outcome.reports, strays_set_aside)
        if moved is None:
            break
        as_of_us, stray = moved
        if stray is not None:
            context.manifest = replace(context.manifest, stray_cut=stray)
        outcome = _score_at(session, context, rows, as_of_us, notes)
    return outcome


def _resolved(context: JobContext, as_of_us: int) -> None:
    """Note the moment being scored, which a failed summary keeps (as the local engine's
    manifest does; a Spark run has no checkpoints to resume from, so it stays in memory)."""
    context.manifest = replace(context.manifest, as_of_us=as_of_us)
    logger.info("batch scoring as_of=%s", iso(as_of_us))


def _export_end(tables: dict[str, SparkTable]) -> int:
    """The latest timestamp that parses anywhere (the provisional export end), in µs."""
    latest = [s.latest_us for s in tables.values() if s.latest_us is not None]
    if not latest:
        raise ContractError([Problem("export", NO_EVENT_TIME)])
    return max(latest)


def _score_at(
    session: Any, context: JobContext, rows: Any, as_of_us: int, notes: tuple[str, ...]
) -> _SparkOutcome:
    functions = pyspark_sql().functions
    _resolved(context, as_of_us)
    settings = replace(context.settings(as_of_us), notes=notes)
    scorer = BucketScorer(
        _broadcast_model(session, context), context.policy, settings, table_columns(rows)
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
            *(f"reject_{n}" for n in CHUNK_REJECTS_SCHEMA.names)
        )
        latest = result.where(kind == "latest").select(
            "rows",
            "rejected",
            "withheld",
            LATEST_COLUMN,
            WARNINGS_COLUMN,
            EVENT_DAYS_COLUMN,
            ROW_NOTES_COLUMN,
        )
        return _SparkOutcome(
            as_of_us,
            from_transport(scored.toArrow(), part_schema(settings.reasons != "none")),
            sort_rejects([renamed_rejects(rejects.toArrow())]),
            reports(latest.toArrow()),
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
        require_utf8_bucket(raw)
        outcome = score_chunk(
            raw, _worker_model(self.model_files.value), self.policy, self.settings
        )
        return encode_outcome(outcome, self.settings.reasons != "none")


def require_utf8_bucket(raw: Mapping[str, pa.Table]) -> None:
    """Refuse a bucket whose text is not UTF-8 (``features.table_files.require_utf8_text``),
    rows numbered in their file: Spark's reader passes such bytes on unchecked, where the
    local engine refuses them as it reads the file.

    Raises:
        ContractError: naming the table, the column and the first such row of its file.
    """
    for name, table in raw.items():
        try:
            require_utf8_text(table.drop_columns([ROW_COLUMN, MOVED_COLUMN]), name)
        except ContractError as error:
            file_rows = table.column(ROW_COLUMN).to_numpy()
            problems = [replace(p, row=_file_row(file_rows, p.row)) for p in error.problems]
            raise ContractError(problems) from None


def _file_row(file_rows: np.ndarray, row: int | None) -> int | None:
    """A bucket's 1-based ``row`` as the 1-based row of its file."""
    return None if row is None else int(file_rows[row - 1]) + 1


def _bucket_function(scorer: BucketScorer) -> Any:
    """A one-argument function, as ``applyInArrow`` expects (Spark counts parameters)."""

    def score_bucket(rows: pa.Table) -> pa.Table:
        return scorer.score(rows)

    return score_bucket


def split_tables(rows: pa.Table, columns: dict[str, tuple[str, ...]]) -> dict[str, pa.Table]:
    """The bucket's rows of each table, with contract column names, ``_row`` and ``_moved``,
    by row number."""
    tables: dict[str, pa.Table] = {}
    table_names = rows.column(TABLE_COLUMN).to_numpy(zero_copy_only=False)
    for table, prefixed in columns.items():
        mine = rows.filter(pa.array(table_names == table))
        mine = mine.take(pa.array(np.argsort(mine.column(ROW_COLUMN).to_numpy(), kind="stable")))
        names = [c.split(SEPARATOR, 1)[1] for c in prefixed]
        numbers = [ROW_COLUMN, MOVED_COLUMN]
        tables[table] = mine.select([*prefixed, *numbers]).rename_columns([*names, *numbers])
    return tables


def _failure(error: BaseException) -> ChunkFailure:
    text = str(error).strip()
    lines = text.splitlines()
    message = unreadable_file(text) or refused_input(text) or (lines[0][:300] if lines else "")
    return ChunkFailure(-1, type(error).__name__, message)


def refused_input(trace: str) -> str | None:
    """The problems of a ``ContractError`` a Python worker raised (a chunk whose text is not
    UTF-8), from the trace Spark wraps it in; None when there is none. Problems name
    columns and rows, never values (``features.problems.Problem``)."""
    _, found, after = trace.rpartition("features.problems.ContractError: ")
    if not found:
        return None
    problems = [line.strip()[2:] for line in after.splitlines() if line.startswith("  - ")]
    return "; ".join(problems)[:600] or None


#: Spark's error for a file its reader failed on, and a Java cause line of its trace.
_FAILED_READ = re.compile(r"Encountered error while reading file (\S+?)\.?\s")
_CAUSE = re.compile(r"^Caused by: ([\w.$]+)(?:: (.*))?$", re.MULTILINE)


def unreadable_file(trace: str) -> str | None:
    """The file a Spark job failed to read and why, from its Java trace (None when the
    trace names no file): the innermost cause's class, and its message when it is
    parquet-mr's (a damaged page, a failed checksum), which names no cell's value; other
    causes' messages may quote one, so they are left out."""
    found = _FAILED_READ.search(trace)
    if found is None:
        return None
    message = f"Spark could not read {found.group(1)}"
    causes = _CAUSE.findall(trace)
    if causes:
        name, detail = causes[-1]
        said = f": {detail[:200]}" if name.startswith("org.apache.parquet.") and detail else ""
        message += f" ({name.rsplit('.', 1)[-1]}{said})"
    return message


def _worker_model(files: dict[str, Any]) -> ReconversionModel:
    """The broadcast model, loaded once per Python worker."""
    fingerprint = str(files["fingerprint"])
    if fingerprint not in _MODELS:
        # The files are read once and the folder removed: nothing is left behind in /tmp.
        with tempfile.TemporaryDirectory(prefix="srl-spark-model-") as name:
            folder = Path(name)
            for file_name in (BOOSTER_FILE, METADATA_FILE):
                (folder / file_name).write_bytes(files[file_name])
            _MODELS[fingerprint] = ReconversionModel.load(folder, num_threads=1)
    return _MODELS[fingerprint]


def _broadcast_model(session: Any, context: JobContext) -> Any:
    folder = context.work.model
    files: dict[str, Any] = {
        name: (folder / name).read_bytes() for name in (BOOSTER_FILE, METADATA_FILE)
    }
    files["fingerprint"] = context.manifest.identity.model_fingerprint
    return session.sparkContext.broadcast(files)
