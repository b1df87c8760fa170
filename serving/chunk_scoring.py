"""Check, featurise, score and route one chunk of leads: the unit of work of every batch engine.

A chunk arrives as raw rows per table (as read from the files, with each row's number in
its file). The loader's own checks (``features.loading.build_export``, lenient) set bad rows
aside; the feature engine, model and routing policy then run exactly as for the API,
through ``serving.scoring.score_features``. The local engine and the Spark engine both call
``score_chunk``; only the way rows are grouped into chunks differs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import TABLES_BY_NAME
from features.engine import FeatureTable, compute_features
from features.examples import Examples, open_rejection_examples
from features.export_end import EventDays, StrayCut, stray_cut
from features.history import DAY_US, History, history_from_export
from features.loading import Export, build_export, latest_timestamp
from features.predictor import ReconversionModel
from features.problems import ContractError
from features.row_notes import RowNote
from features.table_files import arrow_to_pandas
from features.text import (
    arrow_loose_ids,
    arrow_without_surrounding_spaces,
    loose_id,
    text_of,
    without_surrounding_spaces,
)
from serving.batch_output import (
    CHUNK_REJECTS_SCHEMA,
    LEAD_KNOWN_COLUMN,
    LEAD_MOVED_COLUMN,
    LEAD_ROW_COLUMN,
    REJECTS_SCHEMA,
    part_schema,
)
from serving.contact import ContactNow
from serving.export_chunks import MOVED_COLUMN, ROW_COLUMN
from serving.policy import RoutingPolicy
from serving.reasons import explain
from serving.routing import NO_DATE
from serving.scoring import ReasonMode, Scored, score_features

TOP_REASONS = 3


@dataclass(frozen=True)
class ChunkSettings:
    """What every chunk of one job shares (small and picklable, sent to workers).

    Attributes:
        as_of_us: the scoring moment, int64 microseconds (UTC).
        scored_at_us: the job's time stamp, fixed when the job first started.
        model_version: written on every row.
        reasons: ``none``, ``top`` (the strongest few) or ``all``.
        notes: warnings on the export as a whole (such as an absent consent table, found
            when its files were located), reported with every chunk's own.
        stray_cut: the export's rows dated after a quiet spell (mistyped dates,
            ``features.export_end``), set aside in every chunk; None when there are none
            or ``as_of`` was given.
        clock_us: the job's clock, fixed at its first start: rows dated after it
            (``CLOCK_SKEW_ALLOWED`` aside) are set aside as dated in the future, the same
            rows in every chunk however long a resume comes after; None reads this
            machine's clock.
    """

    as_of_us: int
    scored_at_us: int
    model_version: str
    reasons: ReasonMode = "none"
    notes: tuple[str, ...] = ()
    stray_cut: StrayCut | None = None
    clock_us: int | None = None


@dataclass(frozen=True)
class ChunkOutcome:
    """What scoring a chunk produced.

    Attributes:
        scored: one row per open rejection (``batch_output.part_schema``).
        rejects: rows set aside (``batch_output.CHUNK_REJECTS_SCHEMA``), numbered in their
            file.
        latest_us: the latest timestamp among the chunk's valid rows (None when none).
        warnings: notes on the export as a whole (``ChunkSettings.notes``).
        row_notes: the loader's notes on some rows of a table (such as unknown activity
            types kept as ``other``), their first rows numbered in their file, for the job
            to add up over its chunks (``features.row_notes.merged_notes``).
        withheld: open rejections left unscored because their lead has a set-aside row of a
            ``FAIL_CLOSED_TABLES`` table (fail closed).
        event_days: the day summary of the event times the quiet-spell rule reads in the
            chunk (``features.loading.Export.event_days``), from which the job finds the
            export's mistyped dates (``job_stray_cut``).
    """

    scored: pa.Table
    rejects: pa.Table
    latest_us: int | None
    warnings: tuple[str, ...]
    withheld: int = 0
    event_days: EventDays | None = None
    row_notes: tuple[RowNote, ...] = ()


def score_chunk(
    raw: Mapping[str, pa.Table],
    model: ReconversionModel,
    policy: RoutingPolicy,
    settings: ChunkSettings,
) -> ChunkOutcome:
    """Check, score and route every rejection of the chunk open at ``settings.as_of_us``.

    Args:
        raw: table name to raw rows, each with a ``_row`` column (0-based row in its file)
            and a ``_moved`` one (``export_chunks.MOVED_COLUMN``).
        model: the re-conversion model.
        policy: the routing policy.
        settings: the job's shared settings.

    Raises:
        ContractError: a structural problem (a missing column) that no row can be blamed for.
    """
    frames, rows, moved = _raw_frames(raw)
    stamp = pd.Timestamp(settings.as_of_us, unit="us", tz="UTC")
    clock = (
        None if settings.clock_us is None else pd.Timestamp(settings.clock_us, unit="us", tz="UTC")
    )
    export = build_export(
        frames,
        lenient=True,
        snapshot_at=stamp,
        stray_cut=settings.stray_cut,
        clock=clock,
        log_warnings=False,
    )
    lead_rows = _kept_rows(rows["leads"], export, "leads")
    history = _known_leads(history_from_export(export, model.config))
    open_examples = open_rejection_examples(history, settings.as_of_us)
    examples = _without_leads(history, open_examples, _unverified_leads(export, frames))
    scored = _scored_table(history, examples, lead_rows, model, policy, settings)
    rejects = _rejects_table(export, _RawRows(frames, rows, moved), scored)
    withheld = len(open_examples) - len(examples)
    latest = _latest_valid(export)
    # the chunk's tables are checked without files, so each note names its table
    notes = tuple(note.renumbered(rows[note.file]) for note in export.row_notes)
    return ChunkOutcome(scored, rejects, latest, settings.notes, withheld, export.event_days, notes)


def job_stray_cut(chunk_days: Iterable[EventDays | None]) -> StrayCut | None:
    """The rows of the whole export dated after a quiet spell (mistyped dates), found from
    its chunks' day summaries as ``features.loading.build_export`` finds them in a whole
    export (``features.export_end.stray_cut``); None when there are none."""
    return stray_cut(EventDays.merged(days for days in chunk_days if days is not None))


#: A set-aside row of these tables leaves its lead unscored: its consent, or which of its
#: rejections is open (a rejection is closed by a later rejection or by an opportunity
#: created after it), is unknown, and contact must never rest on a guess. Activities are
#: not here: a set-aside activity loses one event of the lead's engagement, but it never
#: decides whether a rejection is open or whether the lead may be contacted.
FAIL_CLOSED_TABLES = frozenset({"consent", "rejections", "opportunities"})


def _unverified_leads(export: Export, frames: dict[str, pd.DataFrame]) -> set[str]:
    """Leads with a set-aside row of a ``FAIL_CLOSED_TABLES`` table: the leads its
    ``lead_id`` names, as written or read loosely (``LeadNames``)."""
    names = LeadNames(export.leads["lead_id"].astype(str))
    leads = (
        _lead_of(frames[rejected.table], rejected.row - 1)
        for rejected in export.rejected_rows
        if rejected.table in FAIL_CLOSED_TABLES
    )
    return {named for lead in leads if lead is not None for named in names.named(lead)}


class LeadNames:
    """A chunk's leads, as a set-aside row's ``lead_id`` names them.

    Ids are compared as written, so a row of ``"L1 "`` is not a row of lead ``L1``; but an
    opt-out typed with a stray space, a zero-width space, in lower case or in full-width
    letters must never let ``L1`` be contacted, so a set-aside consent, rejection or
    opportunity row withholds every lead its id names read loosely
    (``features.text.loose_id``; two leads whose ids differ only by case both, fail closed).
    """

    def __init__(self, lead_ids: Iterable[str]) -> None:
        self.known = frozenset(lead_ids)

    @functools.cached_property
    def _loosely(self) -> dict[str, tuple[str, ...]]:
        """The leads by their loose id (built the first time a row needs it)."""
        leads = sorted(self.known)
        keys = arrow_loose_ids(pa.array(leads, pa.string())).to_pylist()
        grouped: dict[str, list[str]] = {}
        for key, lead in zip(keys, leads, strict=True):
            grouped.setdefault(key, []).append(lead)
        return {key: tuple(leads) for key, leads in grouped.items()}

    def named(self, lead_id: str) -> tuple[str, ...]:
        """The leads ``lead_id`` names: itself when it is one, else those read loosely."""
        if lead_id in self.known:
            return (lead_id,)
        return self._loosely.get(loose_id(lead_id), ())


def named_leads(lead_id: str) -> tuple[str, ...]:
    """The leads a set-aside row's ``lead_id`` may stand for: itself and, when it has
    surrounding spaces (``features.text.SURROUNDING_SPACES``), itself without them.

    Ids are compared as written, so a row of ``"L1 "`` is not a row of lead ``L1``; but an
    opt-out typed with a stray space must never let ``L1`` be contacted, so a set-aside
    consent, rejection or opportunity row withholds both (fail closed).
    """
    stripped = without_surrounding_spaces(lead_id)
    return (lead_id,) if stripped == lead_id else (lead_id, stripped)


#: The first row (0-based) of each of some lead ids in the leads file; ids not there are left
#: out. Each engine looks them up in its own copy of the leads (``FailClosed.published``).
LeadLocator = Callable[[list[str]], dict[str, int]]


@dataclass
class FailClosed:
    """The whole job's fail-closed check: no lead of a ``FAIL_CLOSED_TABLES`` reject is scored.

    Each chunk already leaves such leads out; this catches a row that went to another
    lead's chunk (all rows sharing a primary key go to the chunk of the key's first row, so
    a key repeated across two leads sets aside the second lead's row in the first's chunk).

    It also makes the rejects file the same however the export was split. A ``lead_id`` is
    shown when it names a lead its row's chunk kept, or, for a row moved away from its
    lead's chunk, a lead of the leads file whose row was not set aside; any other value is
    left out, since a row set aside for an unknown lead may hold anything there. A row's
    ``rejection_id`` (other than a rejection's own) is its lead's open rejection as scored,
    empty when the lead is withheld.

    A scored lead is also left out when its id, read loosely, is that of such a reject
    (``features.text.loose_id``): a chunk withholds the leads of its own rows, and this
    withholds the others an opt-out names read loosely (two leads whose ids differ only by
    case, in different chunks), as Spark, which buckets them together, does.

    Attributes:
        leads: the lead ids of the rejects of ``FAIL_CLOSED_TABLES`` tables, as written
            and without their surrounding spaces (``named_leads``).
        loose: the same ids read loosely (distinct).
        moved: the lead ids of rejects moved away from their lead's chunk (the same way).
        dropped: scored rows left out so far by ``parts``.
        opened: the scored open rejection of each ``moved`` lead, found by ``parts``.
    """

    leads: pa.Array
    moved: pa.Array
    loose: pa.Array
    dropped: int = 0
    opened: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def of(rejects: pa.Table) -> FailClosed:
        """The check for a job's rejects (``batch_output.CHUNK_REJECTS_SCHEMA``)."""
        tables = pa.array(sorted(FAIL_CLOSED_TABLES), pa.string())
        mine = rejects.filter(pc.is_in(rejects.column("table"), value_set=tables))
        moved = rejects.filter(rejects.column(LEAD_MOVED_COLUMN))
        named = _named_lead_ids(mine)
        return FailClosed(named, _named_lead_ids(moved), pc.unique(arrow_loose_ids(named)))

    def parts(self, parts: Iterable[pa.Table]) -> Iterator[pa.Table]:
        """The scored parts without rows of ``leads``, counting what was left out."""
        for part in parts:
            lead_ids = part.column("lead_id")
            mine = part.filter(pc.is_in(lead_ids, value_set=self.moved))
            self.opened.update(
                zip(
                    mine.column("lead_id").to_pylist(),
                    mine.column("rejection_id").to_pylist(),
                    strict=True,
                )
            )
            kept = part.filter(pc.invert(self._withholds(lead_ids)))
            self.dropped += part.num_rows - kept.num_rows
            yield kept

    def _withholds(self, lead_ids: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Whether each lead id is one this check withholds, as written or read loosely."""
        if isinstance(lead_ids, pa.ChunkedArray):
            lead_ids = lead_ids.combine_chunks()
        withheld = pc.is_in(lead_ids, value_set=self.leads).fill_null(False)
        if len(self.loose) == 0:
            return withheld
        loosely = pc.is_in(arrow_loose_ids(lead_ids), value_set=self.loose).fill_null(False)
        return pc.or_(withheld, loosely)

    def published(self, rejects: pa.Table, locate: LeadLocator) -> pa.Table:
        """The rejects file's rows (``REJECTS_SCHEMA``). Call once ``parts`` is consumed.

        Args:
            rejects: the job's rejects (``CHUNK_REJECTS_SCHEMA``).
            locate: finds the moved rows' leads in the leads file.
        """
        lead_ids = rejects.column("lead_id").combine_chunks()
        own = pc.equal(rejects.column("table"), "rejections").combine_chunks()
        withheld = pc.and_(pc.invert(own), self._withholds(lead_ids))
        shown = rejects.column(LEAD_KNOWN_COLUMN).to_numpy(zero_copy_only=False).copy()
        rejection_ids = pc.if_else(withheld, None, rejects.column("rejection_id")).to_pylist()
        moved = np.flatnonzero(rejects.column(LEAD_MOVED_COLUMN).to_numpy(zero_copy_only=False))
        located = locate(sorted({n for i in moved for n in named_leads(lead_ids[i].as_py())}))
        set_aside = _set_aside_lead_rows(rejects)
        for i in moved.tolist():
            written = lead_ids[i].as_py()
            lead = _known_lead(written, located)
            shown[i] = lead is not None and located[lead] not in set_aside
            if not own[i].as_py() and not withheld[i].as_py():
                rejection_ids[i] = self.opened.get(written if lead is None else lead)
        columns = {
            "lead_id": pc.if_else(pa.array(shown), lead_ids, None),
            "rejection_id": pa.array(rejection_ids, pa.string()),
        }
        return pa.table(
            {n: columns.get(n, rejects.column(n)) for n in REJECTS_SCHEMA.names},
            schema=REJECTS_SCHEMA,
        )


def _set_aside_lead_rows(rejects: pa.Table) -> set[int]:
    """The 0-based rows of the leads file that were set aside."""
    leads = rejects.filter(pc.equal(rejects.column("table"), "leads"))
    return {row - 1 for row in leads.column("row").to_pylist()}


def _named_lead_ids(rejects: pa.Table) -> pa.Array:
    """The distinct leads the rows' ``lead_id`` may stand for (``named_leads``)."""
    lead_ids = rejects.column("lead_id").combine_chunks().drop_null()
    named = pa.concat_arrays([lead_ids, arrow_without_surrounding_spaces(lead_ids)])
    return pc.unique(named)


def _without_leads(history: History, examples: Examples, leads: set[str]) -> Examples:
    """The examples of every lead but ``leads``."""
    if not leads or len(examples) == 0:
        return examples
    lead_ids = history.lead_id[history.rejections.lead[examples.rejection_row]]
    return examples.take(~np.isin(lead_ids.astype(str), list(leads)))


def _raw_frames(
    raw: Mapping[str, pa.Table],
) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray], dict[str, np.ndarray]]:
    frames: dict[str, pd.DataFrame] = {}
    rows: dict[str, np.ndarray] = {}
    moved: dict[str, np.ndarray] = {}
    for name, table in raw.items():
        rows[name] = table.column(ROW_COLUMN).to_numpy()
        moved[name] = table.column(MOVED_COLUMN).to_numpy(zero_copy_only=False)
        frames[name] = arrow_to_pandas(table.drop_columns([ROW_COLUMN, MOVED_COLUMN]))
        if frames[name].empty and not TABLES_BY_NAME[name].optional:
            frames[name], rows[name] = _placeholder(frames[name])
            moved[name] = np.zeros(1, dtype=bool)
    return frames, rows, moved


def _placeholder(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """One all-missing row standing in for a required table this chunk has no rows of.

    The loader insists that required tables are not empty, which holds for the export but
    not for every chunk. The placeholder fails the required-value check, so it is set aside
    and never scored; its row number (-1) keeps it out of the rejects file.
    """
    blank = pd.DataFrame({c: pd.Series([None], dtype=object) for c in frame.columns})
    return blank, np.array([-1], dtype=np.int64)


def _kept_rows(rows: np.ndarray, export: Export, table: str) -> np.ndarray:
    """File row numbers of the rows the loader kept, in the order of its clean table."""
    keep = np.ones(len(rows), dtype=bool)
    keep[[r.row - 1 for r in export.rejected_rows if r.table == table]] = False
    return rows[keep]


def _known_leads(history: History) -> History:
    """The history without rows of leads the loader set aside (their lead index is -1)."""
    return history.between_leads(0, history.n_leads)


def _latest_valid(export: Export) -> int | None:
    try:
        latest = latest_timestamp(export.tables)
    except ContractError:
        return None
    return int(latest.value // 1000)


def _scored_table(
    history: History,
    examples: Examples,
    lead_rows: np.ndarray,
    model: ReconversionModel,
    policy: RoutingPolicy,
    settings: ChunkSettings,
) -> pa.Table:
    schema = part_schema(settings.reasons != "none")
    if len(examples) == 0:
        return schema.empty_table()
    features = compute_features(history, examples, model.config)
    lead = history.rejections.lead[examples.rejection_row]
    contact = ContactNow.read(history, lead, examples.as_of)
    scored = score_features(model, features, examples.as_of, policy, contact=contact)
    columns = {
        "lead_id": history.lead_id[lead],
        "rejection_id": history.rejections.rejection_id[examples.rejection_row],
        "as_of": examples.as_of,
        **_route_columns(scored),
        "model_version": np.full(len(examples), settings.model_version, dtype=object),
        "scored_at": np.full(len(examples), settings.scored_at_us, dtype=np.int64),
        LEAD_ROW_COLUMN: lead_rows[lead],
    }
    if settings.reasons != "none":
        columns["reasons"] = reason_texts(model, features, scored, settings.reasons)
    return pa.Table.from_arrays([_array(columns[f.name], f.type) for f in schema], schema=schema)


def _route_columns(scored: Scored) -> dict[str, np.ndarray]:
    routes = scored.routes
    next_action = routes.next_action_at
    return {
        "probability": scored.probability,
        "beyond_trained_age": scored.beyond_trained_age,
        "tier": routes.tier,
        "program": routes.program,
        "suppressed": routes.suppressed,
        "suppression_reason": routes.suppression_reason,
        "priority": routes.priority,
        "re_entry_stage": routes.re_entry_stage,
        "next_action_date": np.where(next_action == NO_DATE, -1, next_action // DAY_US),
        "policy": np.full(len(next_action), routes.policy, dtype=object),
    }


def _array(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(kind):
        return pa.array(np.asarray(values, dtype=np.int64), type=pa.int64()).cast(kind)
    if pa.types.is_date(kind):
        days = np.asarray(values, dtype=np.int64)
        return pa.array(days.astype(np.int32), type=pa.int32(), mask=days < 0).cast(kind)
    if pa.types.is_string(kind):
        return pa.array([None if v is None else str(v) for v in values], type=kind)
    return pa.array(values, type=kind)


def reason_texts(
    model: ReconversionModel, features: FeatureTable, scored: Scored, mode: ReasonMode
) -> list[str]:
    """Each row's reasons as a JSON list, from the API's own explanation code."""
    top_k = TOP_REASONS if mode == "top" else None
    explained = explain(model, features, scored.matrix, top_k)
    return [json.dumps([r.to_dict() for r in row], separators=(",", ":")) for row in explained]


@dataclass(frozen=True)
class _RawRows:
    """The chunk's raw rows per table, each row's number in its file and moved flag."""

    frames: dict[str, pd.DataFrame]
    rows: dict[str, np.ndarray]
    moved: dict[str, np.ndarray]


def _rejects_table(export: Export, raw: _RawRows, scored: pa.Table) -> pa.Table:
    """The chunk's rejected rows (``CHUNK_REJECTS_SCHEMA``); a ``lead_id`` is kept only when
    it names a lead of the chunk or the row was moved away from its lead's chunk."""
    opened = dict(
        zip(
            scored.column("lead_id").to_pylist(),
            scored.column("rejection_id").to_pylist(),
            strict=True,
        )
    )
    names = LeadNames(export.leads["lead_id"].astype(str))
    records: list[tuple[object, ...]] = []
    for rejected in export.rejected_rows:
        position = rejected.row - 1
        file_row = int(raw.rows[rejected.table][position])
        if file_row < 0:
            continue
        lead_id = _lead_of(raw.frames[rejected.table], position)
        lead = next(iter(names.named(lead_id)), None) if lead_id is not None else None
        rejection_id = rejected.key if rejected.table == "rejections" else opened.get(lead)
        is_known = lead is not None
        moved = bool(raw.moved[rejected.table][position])
        records.append(
            (
                rejected.table,
                file_row + 1,
                rejected.key,
                lead_id if is_known or moved else None,
                rejection_id,
                rejected.reason,
                is_known,
                moved,
            )
        )
    columns = [[record[i] for record in records] for i in range(len(CHUNK_REJECTS_SCHEMA))]
    return pa.Table.from_arrays(
        [pa.array(c, f.type) for c, f in zip(columns, CHUNK_REJECTS_SCHEMA, strict=True)],
        schema=CHUNK_REJECTS_SCHEMA,
    )


def _known_lead(lead_id: str | None, known: Container[str]) -> str | None:
    """The lead of ``known`` that a rejected row's ``lead_id`` names, as written or without
    its surrounding spaces (``named_leads``); the rejects file shows the id as written."""
    if lead_id is None:
        return None
    return next((n for n in named_leads(lead_id) if n in known), None)


def _lead_of(frame: pd.DataFrame, position: int) -> str | None:
    if "lead_id" not in frame:
        return None
    return text_of(frame["lead_id"].iloc[position])
