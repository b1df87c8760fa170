"""The nightly batch job: every rejection open at ``as_of`` scored, routed and written to one file.

``run_batch`` resolves the model once (an alias becomes one version for the whole run),
routes the export into chunks of leads in a work directory beside the output, scores each
chunk with the same features, model and routing policy as the API, and assembles the
output with one atomic move. Rows that fail the data contract are set aside in
``<out>.rejects.csv``; ``<out>.summary.json`` says what happened. Killed at any point and
started again with the same arguments, the job resumes and writes the same bytes.

Every path the job writes is checked before any work (``check_outputs``), and the job
holds ``<out>.lock`` for its whole life, so that a second job on the same output is
refused (``serving.batch_lock``). Exit codes (``BatchSummary.exit_code``): 0 all rows
scored, 3 scored but some input rows were rejected, 1 failed (nothing published at the
output paths; the summary says why), 2 an output path that cannot be used or, from
``srl score``, a bad command line (``batch_summary.save_usage_failure``), 75 (from
``srl score``) an output another job is writing now, 128 + the signal's number when a
signal stopped the job (143 for SIGTERM, ``serving.batch_signals``).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.export_end import StrayCut
from features.output import (
    OutputPathError,
    OutputWriteError,
    StagedFiles,
    check_output_file,
    remove_stale_partials,
)
from features.table_files import check_not_an_export_table
from serving.batch_guard import input_problems
from serving.batch_job import (
    EXIT_USAGE,
    BatchError,
    BatchRequest,
    BatchSummary,
    JobContext,
    JobRecord,
    ScoredJob,
    iso,
    micros,
)
from serving.batch_local import (
    ChunkFailure,
    ChunkReport,
    ChunkWork,
    finished_reports,
    rejected_parts,
    score_pending,
    scored_parts,
)
from serving.batch_lock import held_by_another_job, lock_path, output_lock
from serving.batch_output import (
    save_failed,
    sort_rejects,
    write_json,
    write_rejects,
    write_scored,
)
from serving.batch_progress import Progress, progress_for
from serving.batch_signals import (
    JobStopped,
    publishing,
    signal_received,
    stop_behind,
    stop_on_signals,
)
from serving.batch_summary import (
    done_summary,
    fail,
    refusal_may_be_written,
    refused_inputs,
    request_failure,
    stopped_summary,
    summary_writable,
    write_failed,
)
from serving.checkpoints import JobIdentity, WorkDirectory
from serving.chunk_scoring import FailClosed, job_stray_cut
from serving.export_chunks import ChunkLayout, first_lead_rows, partition_export
from serving.export_reading import (
    NO_EVENT_TIME,
    ExportFiles,
    available_cpus,
    input_fingerprint,
    locate_export,
)
from serving.model_source import directory_fingerprint, load_serving_model
from serving.policy import check_policy_features, idle_rules, read_policy
from serving.spark_parquet import GlobPathError, require_literal_path

logger = logging.getLogger(__name__)


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
        serving.spark_parquet.GlobPathError: the Spark engine was given an export path that
            its reader would take as a glob pattern (before any work).
        features.output.OutputPathError: an output path cannot be used (before any work).
        serving.batch_lock.OutputBusyError: another job is writing the same output (this
            one touched nothing, its summary included).
        BatchError: some chunks could not be scored, or the files could not be written;
            the work directory is kept, so a rerun resumes.
        serving.batch_signals.JobStopped: SIGTERM or SIGHUP stopped the job (Ctrl-C raises
            ``KeyboardInterrupt``); the workers are ended and the work directory is kept.
        features.problems.ContractError: the export is structurally unusable.
        features.model_store.ModelLoadError: the model could not be loaded.
        serving.policy.PolicyError: the routing policy is unreadable, invalid, or reads a
            feature the model does not compute.

    The job holds its output's lock (``<out>.lock``) from its path checks to its end.
    Whatever stops the job once it holds the lock, a signal included, ``<out>.summary.json``
    says ``failed`` and why before the error is raised.
    """
    with stop_on_signals():
        check_data(request)
        check_outputs(request)
        with output_lock(request.out):
            return _run_locked(request, progress, spark)


def _run_locked(request: BatchRequest, progress: Progress | None, spark: Any) -> BatchSummary:
    """The job, once it holds its output's lock (it alone writes the summary then)."""
    _refused(request, WorkDirectory.beside(request.out).check_usable, locked=True)
    _remove_stale_partials(request)
    record = JobRecord()
    try:
        return _run(request, progress if progress is not None else progress_for(), spark, record)
    except BatchError:
        raise
    except (Exception, KeyboardInterrupt, JobStopped) as error:
        # every failure or stop leaves a failed summary, then propagates; an error raised
        # while the job was stopping (a clean-up that failed on the way out) is the stop
        ended_by = _ended_by(error)
        save_failed(stopped_summary(request, record, ended_by), request.summary_path)
        if ended_by is error:
            raise
        raise ended_by from error


def _remove_stale_partials(request: BatchRequest) -> None:
    """Remove the temporaries a job killed while publishing left beside this job's three
    files (``features.output.remove_stale_partials``), except beside a rejects or summary
    path that another running job writes as its own output (same names, its temporaries)."""
    for path in (request.out, request.rejects_path, request.summary_path):
        if path != request.out and held_by_another_job(path):
            continue
        for stale in remove_stale_partials(path):
            logger.warning("batch removed %s (left by a job killed while writing)", stale.name)


def _ended_by(error: BaseException) -> BaseException:
    """What ended the job: ``error``, or the stop behind it when it is a failure raised while
    the job was stopping (a clean-up that failed on the way out)."""
    if isinstance(error, JobStopped | KeyboardInterrupt):
        return error
    return stop_behind(error) or signal_received() or error


def check_data(request: BatchRequest) -> None:
    """Refuse, before any work, an export path the engine would not read as written.

    The Spark engine's reader expands glob characters (``exp[1]`` reads ``exp1``), while
    the checks that find the tables take the path as written; the local engine reads every
    path as written. A refusal leaves a failed summary, as a bad output path does.

    Raises:
        GlobPathError: naming the path and the character.
    """
    if request.engine == "spark":
        _refused(request, lambda: require_literal_path(request.data), locked=False)


def check_outputs(request: BatchRequest) -> None:
    """Check every file the job writes, before any work.

    When the output's extension is right and its summary can be written, a refusal also
    leaves a failed summary (a directory at ``--out`` or at the rejects file), so that no
    earlier run's status stands. ``<out>.work`` is checked once the job holds the
    output's lock (``run_batch``): until then it may be another job's.

    Raises:
        OutputPathError: naming the first path that cannot be used, and why.
    """

    def check() -> None:
        check_not_an_export_table(check_output_file(request.out), request.data)
        check_output_file(request.summary_path, suffixes=None)
        check_output_file(request.rejects_path, suffixes=None)
        check_output_file(lock_path(request.out), suffixes=None)

    _refused(request, check, locked=False)


def _refused(request: BatchRequest, check: Callable[[], object], *, locked: bool) -> None:
    """Run a path check; a refusal leaves a failed summary (exit code 2) when it can: a job
    holding the output's lock (``locked``) always may, one that does not only when no
    running job holds it."""
    try:
        check()
    except (OutputPathError, GlobPathError) as error:
        if summary_writable(request.out) if locked else refusal_may_be_written(request.out):
            save_failed(request_failure(request, error, EXIT_USAGE), request.summary_path)
        raise


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
    check_policy_features(policy, model.config, request.policy_path)
    for warning in idle_rules(policy, model.trained_age_days):
        logger.warning("batch policy: %s", warning)
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
        now = datetime.now(UTC)
        manifest = work.open(job, micros(request.scored_at or now), micros(now))
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
        _partition(context, export, staged)
    except BaseException:
        # A routing cut short is never resumed (the next start routes again): its files go
        # now, so that on a full disk the failed summary can still be written beside them
        context.work.discard(staged)
        raise
    context.work.publish(staged, context.work.spill)
    context.timings["partition"] = time.monotonic() - began
    layout = context.work.layout()
    assert layout is not None
    return layout


def _partition(context: JobContext, export: ExportFiles, staged: Path) -> None:
    """Route the export into ``staged``, a write error naming the file or the folder."""
    try:
        partition_export(export, context.model.config, context.request.chunk_leads, staged)
    except OSError as error:  # Arrow's write errors name no file: name the folder
        if error.filename is not None or isinstance(error, OutputWriteError):
            raise
        raise OutputWriteError.of(staged, error) from error


def _resolve_as_of(context: JobContext, layout: ChunkLayout) -> int:
    manifest = context.manifest
    if manifest.as_of_us is None:
        requested = context.request.as_of
        moment = micros(requested) if requested is not None else layout.latest_us
        if moment is None:
            failure = ChunkFailure(-1, "NoTimestamps", NO_EVENT_TIME)
            raise BatchError(fail(context, [failure]))
        manifest = replace(manifest, as_of_us=moment)
        context.work.save(manifest)
        context.manifest = manifest
    assert manifest.as_of_us is not None
    return manifest.as_of_us


def _score(
    context: JobContext, layout: ChunkLayout, as_of_us: int, progress: Progress
) -> tuple[list[ChunkReport], list[ChunkFailure]]:
    """Score every chunk; without ``--as-of``, score again where the export really ends
    (``moved_export_end``), each move kept in the manifest for a resumed job."""
    began = time.monotonic()
    reports, failures = _score_at(context, layout, as_of_us, progress)
    for _ in range(END_MOVES):
        if context.request.as_of is not None or failures:
            break
        moved = moved_export_end(as_of_us, reports, context.manifest.stray_cut is not None)
        if moved is None:
            break
        as_of_us, stray = moved
        stray = stray or context.manifest.stray_cut
        context.manifest = replace(context.manifest, as_of_us=as_of_us, stray_cut=stray)
        context.work.save(context.manifest)
        reports, failures = _score_at(context, layout, as_of_us, progress)
    context.timings["scoring"] = time.monotonic() - began
    return reports, failures


#: How many times a job moves its default ``as_of`` (``moved_export_end``): before the
#: strays, then to the latest valid event. Set-aside rows do not depend on ``as_of``, so
#: that end does not move again.
END_MOVES = 2


def moved_export_end(
    as_of_us: int, reports: list[ChunkReport], strays_set_aside: bool
) -> tuple[int, StrayCut | None] | None:
    """Where to score again so that a default ``as_of`` is the export's end as the loader
    finds it, and the strays to set aside then; None when ``as_of_us`` is that end.

    First, once, rows dated after a quiet spell of the whole export (``job_stray_cut`` of
    the chunks' day summaries) are set aside and the end moves before them; then the end
    is the latest event of a valid row (set-aside rows may have held the latest timestamp).
    Both engines score again until this says None, at most ``END_MOVES`` times.
    """
    if not strays_set_aside:
        stray = job_stray_cut(r.event_days for r in reports)
        if stray is not None:
            _log_moved_end(as_of_us, stray.last_regular_us, stray)
            return stray.last_regular_us, stray
    latest = max((r.latest_us for r in reports if r.latest_us is not None), default=None)
    if latest is None or latest == as_of_us:
        return None
    _log_moved_end(as_of_us, latest, None)
    return latest, None


def _log_moved_end(as_of_us: int, end_us: int, stray: StrayCut | None) -> None:
    if stray is None:
        why = "its latest rows were rejected"
    else:
        why = f"{stray.count:,} rows dated after a quiet spell are set aside as mistyped dates"
    logger.warning("batch export_end_moved from=%s to=%s (%s)", iso(as_of_us), iso(end_us), why)


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


def finish(context: JobContext, job: ScoredJob) -> BatchSummary:
    """Write output, rejects and summary, then drop the work directory.

    All three are written under temporary names first and moved into place only when all
    are written: if any cannot be written (a full disk, a directory in the way), the
    previous run's files stay as they were, a failed summary names the file and why and
    ``BatchError`` is raised; the work directory is kept so that a rerun resumes. Once the
    files are moved into place, a SIGTERM no longer stops the job (``publishing``).

    Before any of it, inputs that would route the wrong people (``serving.batch_guard``)
    fail the job, its work kept.

    Raises:
        BatchError: the inputs were refused, or the output, the rejects or the summary
            could not be written.
    """
    began = time.monotonic()
    request = context.request
    refusals = input_problems(
        job.input_rows,
        job.rejects,
        request.allow_missing,
        request.max_rejected_share,
        job.notes,
        request.allow_unmatched,
    )
    if refusals:
        raise BatchError(refused_inputs(context, job, refusals))
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
            summary = done_summary(context, job, counts, withheld)
            write_json(summary.document, request.summary_path, staged)
            with publishing():
                staged.publish()
                context.work.remove()
    except OSError as error:
        raise BatchError(write_failed(context, error, job.as_of_us)) from error
    logger.info(
        "batch done rows=%d rejected=%d exit_code=%d",
        counts.rows,
        job.rejects.num_rows,
        summary.exit_code,
    )
    return summary


def _workers(request: BatchRequest) -> int:
    return request.workers if request.workers > 0 else available_cpus()
