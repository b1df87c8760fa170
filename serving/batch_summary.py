"""The batch job's ``<out>.summary.json``: the summary of a finished run, and the failed
summary every stop leaves, keeping what the run had resolved by then."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from features.output import OutputPathError, check_output_file, check_table_path
from serving.batch_guard import allowed_absence_warnings
from serving.batch_job import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    BatchRequest,
    BatchSummary,
    JobContext,
    JobRecord,
    ScoredJob,
    iso,
    micros,
    summary_path,
)
from serving.batch_local import ChunkFailure
from serving.batch_lock import held_by_another_job
from serving.batch_output import (
    OutputCounts,
    failure_of,
    save_failed,
)
from serving.batch_signals import stopped_by
from serving.model_source import ModelIdentity


def save_usage_failure(out: Path, failure: dict[str, Any]) -> None:
    """Leave a failed summary (exit code 2) for a command line refused before the job began.

    Written only when ``out`` has the right extension, its summary can be written and no
    running job holds the output, like the summary of an unusable output path
    (``check_outputs``), so that no earlier run's status stands.

    Args:
        out: the ``--out`` given.
        failure: the ``failures`` entry saying what was refused and why.
    """
    if refusal_may_be_written(out):
        document = {"output": str(out), "status": "failed", "exit_code": EXIT_USAGE}
        save_failed(document | {"failures": [failure]}, summary_path(out))


def summary_writable(out: Path) -> bool:
    """Whether ``out`` is a usable output path whose summary can be written."""
    try:
        check_table_path(out)
        check_output_file(summary_path(out), suffixes=None)
    except OutputPathError:
        return False
    return True


def refusal_may_be_written(out: Path) -> bool:
    """Whether a refusal before the job holds its lock may leave its summary: the summary
    can be written and no running job holds the output (whose summary stays its own)."""
    return summary_writable(out) and not held_by_another_job(out)


def write_failed(context: JobContext, error: OSError, as_of_us: int) -> BatchSummary:
    """A failed summary naming the file that could not be written (no chunk to blame)."""
    return _save_failure(context, [failure_of(error)], as_of_us)


def stopped_summary(
    request: BatchRequest, record: JobRecord, error: BaseException
) -> dict[str, Any]:
    """The failed summary of an error or a signal that stopped the run, with what it had
    resolved; a signal's exit code is ``128 +`` its number (``JobStopped.exit_code``)."""
    stop = stopped_by(error)
    exit_code = EXIT_FAILED if stop is None else stop.exit_code
    if record.context is not None:
        context = record.context
        document = _failed_document(context, [_failure_entry(error)], context.manifest.as_of_us)
        return document | {"exit_code": exit_code}
    return request_failure(request, error, exit_code, record.model_identity)


def _failure_entry(error: BaseException) -> dict[str, Any]:
    """The summary's ``failures`` entry: a stop names its signal, a failure its error."""
    stop = stopped_by(error)
    if stop is None:
        return failure_of(error)
    return {"chunk": None, "error": type(stop).__name__, "message": stop.message}


def request_failure(
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
        "failures": [_failure_entry(error)],
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


def done_summary(
    context: JobContext, job: ScoredJob, counts: OutputCounts, withheld: int
) -> BatchSummary:
    """The summary of a run whose files were written: counts, rejects, warnings."""
    rejects = job.rejects
    exit_code = EXIT_REJECTED if rejects.num_rows else EXIT_OK
    document = _base_summary(context) | {
        "status": "rejected_rows" if rejects.num_rows else "ok",
        "exit_code": exit_code,
        "as_of": iso(job.as_of_us),
        "input_rows": job.input_rows,
        "scored": counts.to_dict(),
        "rejected_rows": _rejected_rows(rejects),
        "withheld": withheld,
        "rejects_file": str(context.request.rejects_path) if rejects.num_rows else None,
        "warnings": [
            *job.notes,
            *allowed_absence_warnings(job.input_rows, context.request.allow_missing),
            *moment_warnings(job, counts, withheld),
        ],
        "failures": [],
    }
    return BatchSummary(document)


#: An ``as_of`` this many days or more past the export's end is worth a warning.
STALE_AS_OF_DAYS = 30


def moment_warnings(job: ScoredJob, counts: OutputCounts, withheld: int) -> list[str]:
    """Warnings about the scoring moment: nothing scored (an ``as_of`` before the export's
    rejections, say, or every open rejection withheld: an import that replaces the CRM's
    list would empty it), or an ``as_of`` well past the export's end (its latest valid
    timestamp: the leads look idle since)."""
    warnings = []
    if counts.rows == 0:
        why = (
            f"the {withheld:,} open rejection(s) at as_of {iso(job.as_of_us)} were all "
            "withheld (their lead failed closed)"
            if withheld
            else f"no rejection is open at as_of {iso(job.as_of_us)}"
        )
        warnings.append(
            f"nothing was scored: {why}; an import that replaces the CRM's list with this "
            "file would empty it"
        )
    ends = [r.latest_us for r in job.reports if r.latest_us is not None]
    if ends:
        days = (job.as_of_us - max(ends)) / 86_400_000_000
        if days >= STALE_AS_OF_DAYS:
            warnings.append(
                f"as_of is {days:,.0f} days after the export's end ({iso(max(ends))}): "
                "nothing that happened since is in the export, so every lead is scored as "
                "if it did nothing since"
            )
    return warnings


def refused_inputs(context: JobContext, job: ScoredJob, problems: list[str]) -> BatchSummary:
    """Write the summary of a run refused for its inputs (``serving.batch_guard``): each
    problem, and the rows read and set aside per table. Nothing is published; the work
    directory stays, so a rerun that accepts the inputs only publishes."""
    failures = [{"chunk": None, "error": "InputRefused", "message": p} for p in problems]
    document = _failed_document(context, failures, job.as_of_us) | {
        "input_rows": job.input_rows,
        "rejected_rows": _rejected_rows(job.rejects),
    }
    save_failed(document, context.request.summary_path)
    return BatchSummary(document)


def _rejected_rows(rejects: pa.Table) -> dict[str, Any]:
    """How many rows were set aside, in all and per table."""
    by_table: dict[str, int] = {}
    for table in rejects.column("table").to_pylist():
        by_table[table] = by_table.get(table, 0) + 1
    return {"total": rejects.num_rows, "by_table": by_table}


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


def _model_summary(identity: ModelIdentity) -> dict[str, Any]:
    return {
        "uri": identity.uri,
        "name": identity.name,
        "version": identity.version,
        "alias": identity.alias,
        "run_id": identity.run_id,
    }
