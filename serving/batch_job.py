"""The batch job's types: its request, its summary, what a run resolves, and its time stamps.

``serving.batch`` runs the job, ``serving.batch_summary`` writes its summaries; both, and
the Spark engine, share these.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import pyarrow as pa

from features.model_store import DEFAULT_MODEL_URI
from features.predictor import ReconversionModel
from features.row_notes import merged_notes
from serving.batch_guard import DEFAULT_MAX_REJECTED_SHARE, GUARDED_TABLES
from serving.batch_local import (
    ChunkReport,
)
from serving.checkpoints import Manifest, WorkDirectory
from serving.chunk_scoring import ChunkSettings, LeadLocator
from serving.model_source import ModelIdentity
from serving.policy import RoutingPolicy
from serving.scoring import ReasonMode

DEFAULT_CHUNK_LEADS = 50_000


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3

#: Another job is writing the same output now: sysexits' ``EX_TEMPFAIL``, a condition that
#: passes (try again later), told apart from a bad command line (2), which does not.
EXIT_BUSY = 75


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
        allow_missing: optional tables the job may run without (``serving.batch_guard``).
        max_rejected_share: the largest share of any table's rows that may be set aside
            before the job refuses to publish (``serving.batch_guard``).
        allow_unmatched: optional tables whose set-aside rows may name no lead of the
            export (``serving.batch_guard.unmatched_problems``).
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
    allow_missing: frozenset[str] = frozenset()
    max_rejected_share: float = DEFAULT_MAX_REJECTED_SHARE
    allow_unmatched: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        """Refuse arguments the CLI's options would refuse, for callers of the Python API.

        Raises:
            ValueError: naming the argument and why.
        """
        problems = _request_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def summary_path(self) -> Path:
        """``<out>.summary.json``."""
        return summary_path(self.out)

    @property
    def rejects_path(self) -> Path:
        """``<out>.rejects.csv``."""
        return self.out.with_name(self.out.name + ".rejects.csv")


def _request_problems(request: BatchRequest) -> list[str]:
    """What is wrong with a request's arguments, one sentence each."""
    problems = []
    if request.engine not in get_args(Engine):
        problems.append(f"engine {request.engine!r} is not one of {', '.join(get_args(Engine))}")
    if request.reasons not in get_args(ReasonMode):
        choices = ", ".join(get_args(ReasonMode))
        problems.append(f"reasons {request.reasons!r} is not one of {choices}")
    for name in ("allow_missing", "allow_unmatched"):
        unknown = sorted(set(getattr(request, name)) - set(GUARDED_TABLES))
        if unknown:
            choices = ", ".join(GUARDED_TABLES)
            problems.append(f"{name} {', '.join(map(repr, unknown))}: not one of {choices}")
    if not 0.0 <= request.max_rejected_share <= 1.0:
        problems.append(f"max_rejected_share {request.max_rejected_share!r} is not in [0, 1]")
    if request.chunk_leads < 1:
        problems.append(f"chunk_leads {request.chunk_leads!r} is less than 1")
    if request.workers < 0:
        problems.append(f"workers {request.workers!r} is negative")
    return problems


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
            as_of_us,
            self.manifest.scored_at_us,
            self.model_identity.version,
            self.request.reasons,
            stray_cut=self.manifest.stray_cut,
            clock_us=self.manifest.clock_us,
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

    @property
    def notes(self) -> list[str]:
        """The loader's warnings: those on the export as a whole, each once, sorted, then
        those on some rows of a table, added up over the chunks (one per file and kind)."""
        whole = sorted({w for r in self.reports for w in r.warnings})
        rows = merged_notes(note for r in self.reports for note in r.row_notes)
        return whole + [note.text() for note in rows]


def micros(moment: datetime) -> int:
    """A datetime (naive means UTC) as integer microseconds since the epoch."""
    stamp = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (stamp - EPOCH) // timedelta(microseconds=1)


def iso(micros_since_epoch: int) -> str:
    """Microseconds since the epoch as ISO 8601 in UTC (``...Z``)."""
    moment = EPOCH + timedelta(microseconds=micros_since_epoch)
    return moment.isoformat().replace("+00:00", "Z")


def summary_path(out: Path) -> Path:
    """The summary of the output ``out``: ``<out>.summary.json``."""
    return out.with_name(out.name + ".summary.json")
