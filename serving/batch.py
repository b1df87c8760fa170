"""The nightly batch job: every rejection open at ``as_of`` scored, routed and written to one file.

``run_batch`` resolves the model once (an alias becomes one version for the whole run),
routes the export into chunks of leads in a work directory beside the output, scores each
chunk with the same features, model and routing policy as the API, and assembles the
output with one atomic move. Rows that fail the data contract are set aside in
``<out>.rejects.csv``; ``<out>.summary.json`` says what happened. Killed at any point and
started again with the same arguments, the job resumes and writes the same bytes.

Every path the job writes is checked before any work (``check_outputs``). Exit codes
(``BatchSummary.exit_code``): 0 all rows scored, 3 scored but some input rows were
rejected, 1 failed (nothing published at the output paths; the summary says why), 2 an
output path that cannot be used or, from ``srl score``, a bad command line
(``save_usage_failure``).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from features.output import (
    OutputPathError,
    OutputWriteError,
    StagedFiles,
    check_output_file,
    check_table_path,
)
from features.predictor import ReconversionModel
from serving.batch_local import (
    ChunkFailure,
    ChunkReport,
    ChunkWork,
    finished_reports,
    rejected_parts,
    score_pending,
    scored_parts,
)
from serving.batch_output import (
    OutputCounts,
    failure_of,
    save_failed,
    sort_rejects,
    write_json,
    write_rejects,
    write_scored,
)
from serving.batch_progress import Progress, progress_for
from serving.checkpoints import JobIdentity, Manifest, WorkDirectory
from serving.chunk_scoring import ChunkSettings, FailClosed, LeadLocator
from serving.export_chunks import ChunkLayout, first_lead_rows, partition_export
from serving.export_reading import (
    ExportFiles,
    available_cpus,
    input_fingerprint,
    locate_export,
)
from serving.model_source import ModelIdentity, directory_fingerprint, load_serving_model
from serving.policy import RoutingPolicy, check_policy_features, read_policy
from serving.scoring import ReasonMode

logger = logging.getLogger(__name__)

DEFAULT_MODEL_URI = "models:/srl-reconversion@champion"
DEFAULT_CHUNK_LEADS = 50_000
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Engine = Literal["local", "spark"]


@dataclass(frozen=True)
class BatchRequest:
    """One batch run's arguments (``srl score`` options).

    Attributes:
        data: the export directory (for the Spark engine, any path Spark reads).
        out: the output file, ``.parquet`` or ``.csv``.
        as_of: the scoring moment; None scores at the export's end (its latest valid row).
        model_uri: registry alias or version, run URI or local model directory.
        engine: ``local`` (worker processes) or ``spark``.
        reasons: ``none``, ``top`` (three strongest factors) or ``all``.
        policy_path: routing policy YAML (None: the packaged default).
        chunk_leads: leads per chunk (checkpoint unit; bounds memory).
        workers: local worker processes (0: one per CPU).
        scored_at: the time stamp to write (None: when the job first starts).
    """

    data: str
    out: Path
    as_of: datetime | None = None
    model_uri: str = DEFAULT_MODEL_URI
    engine: Engine = "local"
    reasons: ReasonMode = "none"
    policy_path: Path | None = None
    chunk_leads: int = DEFAULT_CHUNK_LEADS
    workers: int = 0
    scored_at: datetime | None = None

    @property
    def summary_path(self) -> Path:
        """``<out>.summary.json``."""
        return summary_path(self.out)

    @property
    def rejects_path(self) -> Path:
        """``<out>.rejects.csv``."""
        return self.out.with_name(self.out.name + ".rejects.csv")


@dataclass(frozen=True)
class BatchSummary:
    """The outcome of a run, as written to ``<out>.summary.json``."""

    document: dict[str, Any]

    @property
    def exit_code(self) -> int:
        """0 clean, 3 some input rows rejected, 1 failed."""
        return int(self.document["exit_code"])


class BatchError(RuntimeError):
    """The job failed; nothing was published at the output paths (its summary was)."""

    def __init__(self, summary: BatchSummary) -> None:
        self.summary = summary
        failures = summary.document.get("failures", [])
        super().__init__(f"batch scoring failed: {len(failures)} failure(s); see the summary")


@dataclass
class JobContext:
    """What one run has resolved: model, policy, work directory and the fixed facts."""

    request: BatchRequest
    policy: RoutingPolicy
    model: ReconversionModel
    model_identity: ModelIdentity
    work: WorkDirectory
    manifest: Manifest
    started: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)
    chunks: dict[str, int] = field(default_factory=dict)

    def settings(self, as_of_us: int) -> ChunkSettings:
        """The chunk settings at ``as_of_us``."""
        return ChunkSettings(
            as_of_us, self.manifest.scored_at_us, self.model_identity.version, self.request.reasons
        )


@dataclass
class JobRecord:
    """What a run has resolved so far, for the failed summary of an error that stops it.

    Attributes:
        model_identity: the model the URI resolved to, once it is loaded.
        context: the whole run's context, once its work directory is open.
    """

    model_identity: ModelIdentity | None = None
    context: JobContext | None = None


def run_batch(
    request: BatchRequest, progress: Progress | None = None, spark: Any = None
) -> BatchSummary:
    """Run the batch job end to end.

    Args:
        request: the run's arguments.
        progress: where chunk progress goes (default: a bar on a terminal, else log lines).
        spark: a SparkSession for the Spark engine (default: one is created).

    Returns:
        The summary (also written beside the output).

    Raises:
        features.output.OutputPathError: an output path cannot be used (before any work).
        BatchError: some chunks could not be scored, or the files could not be written;
            the work directory is kept, so a rerun resumes.
        features.problems.ContractError: the export is structurally unusable.
        features.model_store.ModelLoadError: the model could not be loaded.
        serving.policy.PolicyError: the routing policy is unreadable, invalid, or reads a
            feature the model does not compute.

    Whatever stops the job once its paths are checked, ``<out>.summary.json`` says
    ``failed`` and why before the error is raised.
    """
    check_outputs(request)
    record = JobRecord()
    try:
        return _run(request, progress if progress is not None else progress_for(), spark, record)
    except BatchError:
        raise
    except Exception as error:  # every failure leaves a failed summary, then propagates
        save_failed(_stopped(request, record, error), request.summary_path)
        raise


def check_outputs(request: BatchRequest) -> None:
    """Check every path the job writes, before any work.

    When the output's extension is right and its summary can be written, a refusal also
    leaves a failed summary (a directory at ``--out`` or at the rejects file, something
    other than a work directory at ``<out>.work``), so that no earlier run's status stands.

    Raises:
        OutputPathError: naming the first path that cannot be used, and why.
    """
    try:
        check_output_file(request.out)
        check_output_file(request.summary_path, suffixes=None)
        check_output_file(request.rejects_path, suffixes=None)
        WorkDirectory.beside(request.out).check_usable()
    except OutputPathError as error:
        if _summary_writable(request.out):
            save_failed(_request_failure(request, error, EXIT_USAGE), request.summary_path)
        raise


def save_usage_failure(out: Path, failure: dict[str, Any]) -> None:
    """Leave a failed summary (exit code 2) for a command line refused before the job began.

    Written only when ``out`` has the right extension and its summary can be written, like
    the summary of an unusable output path (``check_outputs``), so that no earlier run's
    status stands.

    Args:
        out: the ``--out`` given.
        failure: the ``failures`` entry saying what was refused and why.
    """
    if _summary_writable(out):
        document = {"output": str(out), "status": "failed", "exit_code": EXIT_USAGE}
        save_failed(document | {"failures": [failure]}, summary_path(out))


def summary_path(out: Path) -> Path:
    """The summary of the output ``out``: ``<out>.summary.json``."""
    return out.with_name(out.name + ".summary.json")


def _summary_writable(out: Path) -> bool:
    try:
        check_table_path(out)
        check_output_file(summary_path(out), suffixes=None)
    except OutputPathError:
        return False
    return True


def _run(request: BatchRequest, progress: Progress, spark: Any, record: JobRecord) -> BatchSummary:
    if request.engine == "spark":
        from serving.spark import run_spark_batch

        return run_spark_batch(request, progress, spark, record)
    export = locate_export(request.data)
    context = open_job(request, input_fingerprint(export), record)
    layout = _routed(context, export)
    as_of_us = _resolve_as_of(context, layout)
    reports, failures = _score(context, layout, as_of_us, progress)
    if failures:
        raise BatchError(fail(context, failures))
    final_as_of = context.manifest.as_of_us
    assert final_as_of is not None
    return _finish_local(context, layout, final_as_of, reports)


def open_job(request: BatchRequest, fingerprint: str, record: JobRecord) -> JobContext:
    """Load policy and model (alias resolved once) and open or resume the work directory,
    noting each in ``record`` as it is known."""
    policy = read_policy(request.policy_path)
    model, identity = load_serving_model(request.model_uri, num_threads=1)
    record.model_identity = identity
    check_policy_features(policy, model.config)
    work = WorkDirectory.beside(request.out)
    with tempfile.TemporaryDirectory(prefix="srl-model-") as folder:
        snapshot = model.save(Path(folder) / "model")
        job = JobIdentity(
            input_fingerprint=fingerprint,
            model_uri=request.model_uri,
            model_version=identity.version,
            model_fingerprint=directory_fingerprint(snapshot),
            as_of=None if request.as_of is None else iso(micros(request.as_of)),
            chunk_leads=request.chunk_leads,
            policy=policy.label,
            policy_fingerprint=hashlib.sha256(policy.model_dump_json().encode()).hexdigest(),
            reasons=request.reasons,
            engine=request.engine,
        )
        manifest = work.open(job, micros(request.scored_at or datetime.now(UTC)))
        work.install_model(snapshot)
    logger.info(
        "batch job model=%s version=%s policy=%s scored_at=%s",
        request.model_uri,
        identity.version,
        policy.label,
        iso(manifest.scored_at_us),
    )
    record.context = JobContext(request, policy, model, identity, work, manifest)
    return record.context


def _routed(context: JobContext, export: ExportFiles) -> ChunkLayout:
    """The export routed into chunks (done once; a resumed job reuses it)."""
    layout = context.work.layout()
    if layout is not None:
        return layout
    began = time.monotonic()
    staged = context.work.staging("spill")
    try:
        partition_export(export, context.model.config, context.request.chunk_leads, staged)
    except OSError as error:  # Arrow's write errors name no file: name the folder
        if error.filename is not None or isinstance(error, OutputWriteError):
            raise
        raise OutputWriteError.of(staged, error) from error
    context.work.publish(staged, context.work.spill)
    context.timings["partition"] = time.monotonic() - began
    layout = context.work.layout()
    assert layout is not None
    return layout


def _resolve_as_of(context: JobContext, layout: ChunkLayout) -> int:
    manifest = context.manifest
    if manifest.as_of_us is None:
        requested = context.request.as_of
        moment = micros(requested) if requested is not None else layout.latest_us
        if moment is None:
            raise BatchError(fail(context, [ChunkFailure(-1, "NoTimestamps", "no timestamps")]))
        manifest = Manifest(manifest.identity, manifest.scored_at_us, moment)
        context.work.save(manifest)
        context.manifest = manifest
    assert manifest.as_of_us is not None
    return manifest.as_of_us


def _score(
    context: JobContext, layout: ChunkLayout, as_of_us: int, progress: Progress
) -> tuple[list[ChunkReport], list[ChunkFailure]]:
    """Score every chunk; at the export's end, re-score once if bad rows moved the end."""
    began = time.monotonic()
    reports, failures = _score_at(context, layout, as_of_us, progress)
    latest = max((r.latest_us for r in reports if r.latest_us is not None), default=None)
    if not failures and context.request.as_of is None and latest is not None and latest != as_of_us:
        logger.warning(
            "batch export_end_moved from=%s to=%s (its latest rows were rejected)",
            iso(as_of_us),
            iso(latest),
        )
        context.manifest = Manifest(
            context.manifest.identity, context.manifest.scored_at_us, latest
        )
        context.work.save(context.manifest)
        reports, failures = _score_at(context, layout, latest, progress)
    context.timings["scoring"] = time.monotonic() - began
    return reports, failures


def _score_at(
    context: JobContext, layout: ChunkLayout, as_of_us: int, progress: Progress
) -> tuple[list[ChunkReport], list[ChunkFailure]]:
    work = context.work
    work.drop_parts_except(as_of_us)
    chunk_work = ChunkWork(
        work.spill,
        layout,
        work.parts(as_of_us),
        work.model,
        context.policy,
        context.settings(as_of_us),
    )
    done = work.finished(as_of_us)
    pending = [c for c in range(layout.n_chunks) if c not in done]
    context.chunks.setdefault("resumed", len(done))
    context.chunks["total"] = layout.n_chunks
    progress.start(layout.n_chunks, len(done))
    try:
        failures = score_pending(chunk_work, pending, _workers(context.request), progress)
    finally:
        progress.close()
    if failures:
        return [], failures
    return finished_reports(chunk_work.parts, range(layout.n_chunks)), []


def _finish_local(
    context: JobContext, layout: ChunkLayout, as_of_us: int, reports: list[ChunkReport]
) -> BatchSummary:
    parts = context.work.parts(as_of_us)
    chunks = range(layout.n_chunks)
    spill = context.work.spill
    scored = ScoredJob(
        as_of_us,
        scored_parts(parts, chunks),
        sort_rejects(rejected_parts(parts, chunks)),
        reports,
        layout.rows,
        lambda lead_ids: first_lead_rows(spill, layout, lead_ids),
    )
    return finish(context, scored)


@dataclass(frozen=True)
class ScoredJob:
    """What an engine hands to ``finish`` once every chunk is scored.

    Attributes:
        as_of_us: the scoring moment the chunks were scored at.
        parts: the scored rows (``batch_output.part_schema``), in lead order.
        rejects: every chunk's rejects (``batch_output.CHUNK_REJECTS_SCHEMA``), sorted.
        reports: one report per chunk.
        input_rows: rows per table file.
        locate_leads: finds leads in the leads file (``chunk_scoring.LeadLocator``).
    """

    as_of_us: int
    parts: Iterable[pa.Table]
    rejects: pa.Table
    reports: list[ChunkReport]
    input_rows: dict[str, int]
    locate_leads: LeadLocator


def finish(context: JobContext, job: ScoredJob) -> BatchSummary:
    """Write output, rejects and summary, then drop the work directory.

    All three are written under temporary names first and moved into place only when all
    are written: if any cannot be written (a full disk, a directory in the way), the
    previous run's files stay as they were, a failed summary names the file and why and
    ``BatchError`` is raised; the work directory is kept so that a rerun resumes.

    Raises:
        BatchError: the output, the rejects or the summary could not be written.
    """
    began = time.monotonic()
    request = context.request
    fail_closed = FailClosed.of(job.rejects)
    try:
        with StagedFiles() as staged:
            counts = write_scored(
                staged,
                fail_closed.parts(job.parts),
                request.out,
                request.chunk_leads,
                request.reasons != "none",
            )
            published = fail_closed.published(job.rejects, job.locate_leads)
            write_rejects(staged, published, request.rejects_path)
            context.timings["writing"] = time.monotonic() - began
            withheld = fail_closed.dropped + sum(r.withheld for r in job.reports)
            summary = _summary(context, job, counts, withheld)
            write_json(summary.document, request.summary_path, staged)
            staged.publish()
    except OSError as error:
        raise BatchError(_write_failed(context, error, job.as_of_us)) from error
    context.work.remove()
    logger.info(
        "batch done rows=%d rejected=%d exit_code=%d",
        counts.rows,
        job.rejects.num_rows,
        summary.exit_code,
    )
    return summary


def _write_failed(context: JobContext, error: OSError, as_of_us: int) -> BatchSummary:
    """A failed summary naming the file that could not be written (no chunk to blame)."""
    return _save_failure(context, [failure_of(error)], as_of_us)


def _stopped(request: BatchRequest, record: JobRecord, error: BaseException) -> dict[str, Any]:
    """The failed summary of an error that stopped the run, with what it had resolved."""
    if record.context is not None:
        context = record.context
        return _failed_document(context, [failure_of(error)], context.manifest.as_of_us)
    return _request_failure(request, error, EXIT_FAILED, record.model_identity)


def _request_failure(
    request: BatchRequest,
    error: BaseException,
    exit_code: int,
    identity: ModelIdentity | None = None,
) -> dict[str, Any]:
    """A failed summary from the arguments (the job stopped before or while it resolved
    its model and work directory) and the model, if it was resolved."""
    model = _model_summary(identity) if identity is not None else None
    return {
        "output": str(request.out),
        "engine": request.engine,
        "data": str(request.data),
        "scored_at": None if request.scored_at is None else iso(micros(request.scored_at)),
        "model": model
        or dict.fromkeys(("name", "version", "alias", "run_id")) | {"uri": request.model_uri},
        "policy": None if request.policy_path is None else str(request.policy_path),
        "reasons": request.reasons,
        "chunk_leads": request.chunk_leads,
        "status": "failed",
        "exit_code": exit_code,
        "as_of": None if request.as_of is None else iso(micros(request.as_of)),
        "failures": [failure_of(error)],
    }


def fail(context: JobContext, failures: list[ChunkFailure]) -> BatchSummary:
    """Write a failed run's summary (the output and the work directory are left alone)."""
    return _save_failure(context, [vars(f) for f in failures], context.manifest.as_of_us)


def _save_failure(
    context: JobContext, failures: list[dict[str, Any]], as_of_us: int | None
) -> BatchSummary:
    """Write a failed summary keeping what the run knew: the resolved model and ``as_of``
    (the resolved moment, else the requested one)."""
    document = _failed_document(context, failures, as_of_us)
    save_failed(document, context.request.summary_path)
    return BatchSummary(document)


def _failed_document(
    context: JobContext, failures: list[dict[str, Any]], as_of_us: int | None
) -> dict[str, Any]:
    requested = context.request.as_of
    if as_of_us is None and requested is not None:
        as_of_us = micros(requested)
    return _base_summary(context) | {
        "status": "failed",
        "exit_code": EXIT_FAILED,
        "as_of": None if as_of_us is None else iso(as_of_us),
        "failures": failures,
    }


def _summary(
    context: JobContext, job: ScoredJob, counts: OutputCounts, withheld: int
) -> BatchSummary:
    rejects = job.rejects
    by_table: dict[str, int] = {}
    for table in rejects.column("table").to_pylist():
        by_table[table] = by_table.get(table, 0) + 1
    exit_code = EXIT_REJECTED if rejects.num_rows else EXIT_OK
    document = _base_summary(context) | {
        "status": "rejected_rows" if rejects.num_rows else "ok",
        "exit_code": exit_code,
        "as_of": iso(job.as_of_us),
        "input_rows": job.input_rows,
        "scored": counts.to_dict(),
        "rejected_rows": {"total": rejects.num_rows, "by_table": by_table},
        "withheld": withheld,
        "rejects_file": str(context.request.rejects_path) if rejects.num_rows else None,
        "warnings": sorted({w for r in job.reports for w in r.warnings}),
        "failures": [],
    }
    return BatchSummary(document)


def _base_summary(context: JobContext) -> dict[str, Any]:
    request, identity = context.request, context.model_identity
    return {
        "output": str(request.out),
        "engine": request.engine,
        "data": str(request.data),
        "scored_at": iso(context.manifest.scored_at_us),
        "model": _model_summary(identity),
        "policy": context.policy.label,
        "reasons": request.reasons,
        "chunk_leads": request.chunk_leads,
        "chunks": dict(context.chunks),
        "seconds": {k: round(v, 3) for k, v in context.timings.items()}
        | {"total": round(time.monotonic() - context.started, 3)},
    }


def _workers(request: BatchRequest) -> int:
    return request.workers if request.workers > 0 else available_cpus()


def micros(moment: datetime) -> int:
    """A datetime (naive means UTC) as integer microseconds since the epoch."""
    stamp = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (stamp - EPOCH) // timedelta(microseconds=1)


def iso(micros_since_epoch: int) -> str:
    """Microseconds since the epoch as ISO 8601 in UTC (``...Z``)."""
    moment = EPOCH + timedelta(microseconds=micros_since_epoch)
    return moment.isoformat().replace("+00:00", "Z")


def _model_summary(identity: ModelIdentity) -> dict[str, Any]:
    return {
        "uri": identity.uri,
        "name": identity.name,
        "version": identity.version,
        "alias": identity.alias,
        "run_id": identity.run_id,
    }
