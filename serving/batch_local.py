"""The local engine: score the routed chunks of an export with a pool of worker processes.

Each worker loads the job's own copy of the model once, then takes chunks: it reads the
chunk's rows from the work directory, scores them (``serving.chunk_scoring``) and writes
the chunk's part atomically. Chunks are independent, so they finish in any order and a
restarted job only scores the chunks without a part; the output is assembled in chunk
order, so the order of finishing never shows.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from features.export_end import EventDays
from features.predictor import ReconversionModel
from features.row_notes import RowNote
from serving.batch_progress import Progress
from serving.batch_signals import end_with_parent
from serving.checkpoints import read_part, write_part
from serving.chunk_scoring import ChunkSettings, score_chunk
from serving.export_chunks import ChunkLayout, read_chunk
from serving.export_reading import available_cpus
from serving.policy import RoutingPolicy

logger = logging.getLogger(__name__)

_WORKER: dict[str, Any] = {}
# How long a worker sent SIGTERM may take to end before it is killed
_WORKER_EXIT_SECONDS = 10.0


@dataclass(frozen=True)
class ChunkReport:
    """What one finished chunk holds (kept in its part's metadata).

    Attributes:
        chunk: the chunk's number.
        rows: scored rows.
        rejected: rows set aside.
        latest_us: the latest valid timestamp in the chunk (None when none).
        warnings: the loader's notes.
        withheld: open rejections left unscored (fail closed, ``ChunkOutcome.withheld``).
        event_days: the day summary of its valid rows' event times
            (``ChunkOutcome.event_days``).
        row_notes: the loader's notes on some rows (``ChunkOutcome.row_notes``).
    """

    chunk: int
    rows: int
    rejected: int
    latest_us: int | None
    warnings: tuple[str, ...]
    withheld: int = 0
    event_days: EventDays | None = None
    row_notes: tuple[RowNote, ...] = ()

    def to_meta(self) -> dict[str, Any]:
        """The part metadata form."""
        return {
            "chunk": self.chunk,
            "rows": self.rows,
            "rejected": self.rejected,
            "latest_us": self.latest_us,
            "warnings": list(self.warnings),
            "withheld": self.withheld,
            "event_days": None if self.event_days is None else self.event_days.to_lists(),
            "row_notes": [note.to_dict() for note in self.row_notes],
        }

    @staticmethod
    def from_meta(meta: dict[str, Any]) -> ChunkReport:
        """Rebuild from part metadata."""
        return ChunkReport(
            int(meta["chunk"]),
            int(meta["rows"]),
            int(meta["rejected"]),
            meta["latest_us"],
            tuple(meta["warnings"]),
            int(meta["withheld"]),
            None if meta["event_days"] is None else EventDays.from_lists(meta["event_days"]),
            tuple(RowNote.from_dict(note) for note in meta["row_notes"]),
        )


@dataclass(frozen=True)
class ChunkFailure:
    """A chunk that could not be scored, and why (no row content, just the error)."""

    chunk: int
    error: str
    message: str


@dataclass(frozen=True)
class ChunkWork:
    """Where a job's chunks come from and go to."""

    spill: Path
    layout: ChunkLayout
    parts: Path
    model: Path
    policy: RoutingPolicy
    settings: ChunkSettings


def score_pending(
    work: ChunkWork, pending: list[int], workers: int, progress: Progress
) -> list[ChunkFailure]:
    """Score every chunk in ``pending`` and checkpoint each as it finishes.

    Args:
        work: the job's chunk locations and settings.
        pending: chunks without a part yet.
        workers: worker processes (1 scores in this process).
        progress: told about each finished chunk.

    Returns:
        The chunks that failed (the others all have a part).
    """
    if not pending:
        return []
    if workers <= 1:
        return _score_here(work, pending, progress)
    return _score_in_pool(work, pending, workers, progress)


def _score_here(work: ChunkWork, pending: list[int], progress: Progress) -> list[ChunkFailure]:
    _load_worker(str(work.model), work.policy, available_cpus())
    failures: list[ChunkFailure] = []
    for chunk in pending:
        try:
            report = run_chunk(work, chunk)
        except Exception as error:  # a failed chunk is reported; the rest still runs
            failures.append(_failure(chunk, error))
            continue
        progress.advance(report.rows)
    return failures


def _score_in_pool(
    work: ChunkWork, pending: list[int], workers: int, progress: Progress
) -> list[ChunkFailure]:
    threads = max(1, available_cpus() // workers)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(), str(work.model), work.policy, threads),
    )
    try:
        failures = _collect(pool, work, pending, progress)
    except BaseException:  # stopped (SIGTERM, Ctrl-C) or failed here: no worker outlives it
        _terminate(pool)
        raise
    pool.shutdown()
    return failures


def _collect(
    pool: ProcessPoolExecutor, work: ChunkWork, pending: list[int], progress: Progress
) -> list[ChunkFailure]:
    """Submit every pending chunk to ``pool`` and wait for all of them."""
    failures: list[ChunkFailure] = []
    futures: dict[Future[ChunkReport], int] = {pool.submit(run_chunk, work, c): c for c in pending}
    for future in as_completed(futures):
        try:
            report = future.result()
        except Exception as error:  # a failed chunk is reported; the rest still runs
            failures.append(_failure(futures[future], error))
            continue
        progress.advance(report.rows)
    return failures


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Shut ``pool`` down now: drop the chunks not started and end the workers.

    ``shutdown`` alone would wait for every submitted chunk, and workers left running after
    this process ends wait for work for ever (and keep its log pipe open). A chunk a worker
    was scoring has no part yet (parts are written atomically): a rerun scores it again.
    """
    # Python 3.14 has ``terminate_workers``; before it, the pool's processes are only here
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(_WORKER_EXIT_SECONDS)
        if process.is_alive():  # stuck where SIGTERM cannot end it
            process.kill()
            process.join()


def _start_worker(job_pid: int, model_dir: str, policy: RoutingPolicy, threads: int) -> None:
    """The pool's initializer: end with the job (``end_with_parent``), load its model."""
    end_with_parent(job_pid)
    _load_worker(model_dir, policy, threads)


def _load_worker(model_dir: str, policy: RoutingPolicy, threads: int) -> None:
    """Load the job's model once per process."""
    if _WORKER.get("model_dir") != model_dir:
        _WORKER["model"] = ReconversionModel.load(model_dir, threads)
        _WORKER["model_dir"] = model_dir
    _WORKER["policy"] = policy


def run_chunk(work: ChunkWork, chunk: int) -> ChunkReport:
    """Score one chunk and write its part (runs in a worker)."""
    raw = read_chunk(work.spill, work.layout, chunk)
    settings = replace(work.settings, notes=work.layout.warnings)
    outcome = score_chunk(raw, _WORKER["model"], _WORKER["policy"], settings)
    report = ChunkReport(
        chunk,
        outcome.scored.num_rows,
        outcome.rejects.num_rows,
        outcome.latest_us,
        outcome.warnings,
        outcome.withheld,
        outcome.event_days,
        outcome.row_notes,
    )
    write_part(work.parts, chunk, outcome.scored, outcome.rejects, report.to_meta())
    return report


def finished_reports(parts: Path, chunks: range) -> list[ChunkReport]:
    """The reports of finished chunks, read from their parts' metadata."""
    return [ChunkReport.from_meta(read_part(parts, c)[2]) for c in chunks]


def scored_parts(parts: Path, chunks: range) -> Iterator[pa.Table]:
    """The scored rows of each chunk, in chunk order."""
    for chunk in chunks:
        yield read_part(parts, chunk)[0]


def rejected_parts(parts: Path, chunks: range) -> Iterator[pa.Table]:
    """The rejected rows of each chunk, in chunk order."""
    for chunk in chunks:
        yield read_part(parts, chunk)[1]


def _failure(chunk: int, error: BaseException) -> ChunkFailure:
    if isinstance(error, BrokenProcessPool):
        logger.error("batch chunk_failed=%d error=worker_died", chunk)
        return ChunkFailure(chunk, "WorkerDied", "a worker process died (killed or out of memory)")
    # A file that cannot be written (a full disk) is told by its message; a bug, by its traceback
    trace = None if isinstance(error, OSError) else error
    logger.error("batch chunk_failed=%d error=%s", chunk, type(error).__name__, exc_info=trace)
    lines = str(error).strip().splitlines()
    return ChunkFailure(chunk, type(error).__name__, lines[0][:300] if lines else "")
