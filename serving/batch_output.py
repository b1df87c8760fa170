"""The batch job's files: the scored table (Parquet or CSV), the rejects file and the summary.

Every file is written to a temporary name beside its target (``features.output``); the
output, the rejects and the summary of a run are all written first and only then moved
into place, one step each (``StagedFiles``), so a failure while writing any of them
publishes none. The scored table is assembled from the chunks' parts in order, one Parquet
row group per chunk of leads, so the same parts always give the same bytes.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import TABLES
from features.output import (
    OutputWriteError,
    StagedFiles,
    atomic_write,
    check_table_path,
    describe_os_error,
    write_text,
)
from features.problems import ContractError

LEAD_ROW_COLUMN = "_lead_row"
UTC_MICROS = pa.timestamp("us", tz="UTC")

_LEADING_FIELDS = [
    pa.field("lead_id", pa.string()),
    pa.field("rejection_id", pa.string()),
    pa.field("as_of", UTC_MICROS),
    pa.field("probability", pa.float64()),
    pa.field("tier", pa.string()),
    pa.field("program", pa.string()),
    pa.field("suppressed", pa.bool_()),
    pa.field("suppression_reason", pa.string()),
    pa.field("priority", pa.int32()),
    pa.field("re_entry_stage", pa.string()),
    pa.field("next_action_date", pa.date32()),
    pa.field("policy", pa.string()),
]
_REASONS_FIELD = pa.field("reasons", pa.string())
#: ``beyond_trained_age`` came last, after the columns of earlier releases, so that imports
#: mapping columns by position keep working.
_TRAILING_FIELDS = [
    pa.field("model_version", pa.string()),
    pa.field("scored_at", UTC_MICROS),
    pa.field("beyond_trained_age", pa.bool_()),
]

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("key", pa.string()),
        pa.field("lead_id", pa.string()),
        pa.field("rejection_id", pa.string()),
        pa.field("reason", pa.string()),
    ]
)

#: Whether a rejected row's ``lead_id`` names a lead of its chunk's leads table, and whether
#: it names a lead of the leads file that is in another chunk (the row was routed away from
#: its lead's chunk because its primary key repeats: ``export_chunks.MOVED_COLUMN``). Kept
#: with the chunks' rejects (checkpoints, Spark) and dropped from the rejects file: there a
#: ``lead_id`` is written only when it names a real lead, because a row set aside for an
#: unknown lead may hold anything in that column (a shifted CSV row: an e-mail address).
#: A chunk's rejects hold no ``lead_id`` that is neither (``chunk_scoring.score_chunk``).
LEAD_KNOWN_COLUMN = "lead_known"
LEAD_MOVED_COLUMN = "lead_moved"
CHUNK_REJECTS_SCHEMA = REJECTS_SCHEMA.append(pa.field(LEAD_KNOWN_COLUMN, pa.bool_())).append(
    pa.field(LEAD_MOVED_COLUMN, pa.bool_())
)


def output_schema(with_reasons: bool) -> pa.Schema:
    """The columns of the scored file (``reasons`` only when reasons were asked for)."""
    reasons = [_REASONS_FIELD] if with_reasons else []
    return pa.schema([*_LEADING_FIELDS, *reasons, *_TRAILING_FIELDS])


def part_schema(with_reasons: bool) -> pa.Schema:
    """The output columns plus each row's lead position in the leads file (for ordering)."""
    return output_schema(with_reasons).append(pa.field(LEAD_ROW_COLUMN, pa.int64()))


@dataclass
class OutputCounts:
    """What the scored file holds, counted while it is written."""

    rows: int = 0
    suppressed: int = 0
    beyond_trained_age: int = 0
    tiers: Counter[str] = field(default_factory=Counter)
    programs: Counter[str] = field(default_factory=Counter)

    def add(self, table: pa.Table) -> None:
        """Count one block of scored rows."""
        self.rows += table.num_rows
        self.suppressed += int(np.count_nonzero(table.column("suppressed").to_numpy()))
        beyond = table.column("beyond_trained_age").to_numpy()
        self.beyond_trained_age += int(np.count_nonzero(beyond))
        self.tiers.update(table.column("tier").to_pylist())
        self.programs.update(table.column("program").to_pylist())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, categories sorted by name."""
        return {
            "rows": self.rows,
            "suppressed": self.suppressed,
            "beyond_trained_age": self.beyond_trained_age,
            "tiers": dict(sorted(self.tiers.items())),
            "programs": dict(sorted(self.programs.items())),
        }


def write_scored(
    staged: StagedFiles,
    parts: Iterable[pa.Table],
    out: Path,
    chunk_leads: int,
    with_reasons: bool,
) -> OutputCounts:
    """Assemble ordered parts into the scored file at ``out`` (published with ``staged``).

    Args:
        staged: the run's files; ``out`` appears when they are published.
        parts: scored rows in output order, with their lead position column.
        out: the target file (``.parquet`` or ``.csv``).
        chunk_leads: leads per chunk; each chunk of leads becomes one Parquet row group.
        with_reasons: whether the parts carry a ``reasons`` column.

    Raises:
        features.output.OutputWriteError: the file could not be written.
    """
    target = check_table_path(out)
    schema = output_schema(with_reasons)
    counts = OutputCounts()

    def write(temporary: Path) -> None:
        groups = (g.select(schema.names) for g in regroup(parts, chunk_leads))
        if target.suffix == ".parquet":
            _write_parquet(groups, temporary, schema, counts)
        else:
            _write_csv(groups, temporary, schema, counts)

    staged.write(target, write)
    return counts


def regroup(parts: Iterable[pa.Table], chunk_leads: int) -> Iterator[pa.Table]:
    """Re-cut ordered tables so that each output block holds exactly one chunk of leads."""
    pending: list[pa.Table] = []
    current: int | None = None
    for part in parts:
        if part.num_rows == 0:
            continue
        chunk = part.column(LEAD_ROW_COLUMN).to_numpy() // chunk_leads
        bounds = np.flatnonzero(np.diff(chunk)) + 1
        for start, stop in zip([0, *bounds], [*bounds, len(chunk)], strict=True):
            if current is not None and chunk[start] != current:
                yield pa.concat_tables(pending)
                pending = []
            current = int(chunk[start])
            pending.append(part.slice(start, stop - start))
    if pending:
        yield pa.concat_tables(pending)


def _write_parquet(
    groups: Iterator[pa.Table], path: Path, schema: pa.Schema, counts: OutputCounts
) -> None:
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for group in groups:
            counts.add(group)
            writer.write_table(group.combine_chunks(), row_group_size=group.num_rows)


def _write_csv(
    groups: Iterator[pa.Table], path: Path, schema: pa.Schema, counts: OutputCounts
) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(schema.names) + "\n")
        for group in groups:
            counts.add(group)
            csv_frame(group).to_csv(handle, header=False, index=False, lineterminator="\n")


def csv_frame(table: pa.Table) -> Any:
    """A table as CSV-ready text: ISO 8601 times in UTC, ``true``/``false``, exact floats."""
    frame = table.to_pandas()
    for name in table.column_names:
        kind = table.schema.field(name).type
        if pa.types.is_timestamp(kind):
            frame[name] = _iso_times(table.column(name))
        elif pa.types.is_date(kind):
            frame[name] = [
                None if d is None else d.isoformat() for d in table.column(name).to_pylist()
            ]
        elif pa.types.is_boolean(kind):
            frame[name] = np.where(
                table.column(name).to_numpy(zero_copy_only=False), "true", "false"
            )
        elif pa.types.is_floating(kind):
            frame[name] = [None if v is None else repr(v) for v in table.column(name).to_pylist()]
    return frame


def _iso_times(column: pa.ChunkedArray) -> np.ndarray:
    values = column.cast(pa.int64()).to_numpy(zero_copy_only=False).astype("datetime64[us]")
    return np.char.add(np.datetime_as_string(values, unit="us"), "Z").astype(object)


def write_rejects(staged: StagedFiles, rejects: pa.Table, path: Path) -> None:
    """Write the rows set aside as CSV (``table,row,key,lead_id,rejection_id,reason``);
    with none, a previous rejects file is removed (both when ``staged`` is published).

    Raises:
        features.output.OutputWriteError: the file could not be written.
    """
    if not rejects.num_rows:
        staged.remove(path)
        return

    def write(temporary: Path) -> None:
        frame = rejects.select(REJECTS_SCHEMA.names).to_pandas()
        frame.to_csv(temporary, index=False, lineterminator="\n")

    staged.write(path, write)


def write_json(document: dict[str, Any], path: Path, staged: StagedFiles | None = None) -> None:
    """Write a JSON document (the run summary): atomically now, or with ``staged``.

    Raises:
        features.output.OutputWriteError: the file could not be written.
    """
    text = json.dumps(document, indent=2) + "\n"
    if staged is None:
        atomic_write(path, lambda temporary: write_text(temporary, text))
    else:
        staged.write(path, lambda temporary: write_text(temporary, text))


def save_failed(document: dict[str, Any], path: Path) -> None:
    """Write a failed run's summary at ``path``, atomically.

    If even that fails (a full disk), a previous summary is removed so that no earlier
    run's status stands, and ``document`` (which is printed) says why under
    ``summary_not_written``.
    """
    try:
        write_json(document, path)
    except OSError as error:
        document["summary_not_written"] = describe_os_error(error)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def failure_of(error: BaseException) -> dict[str, Any]:
    """The summary's failure entry for an error that stopped the whole job (no chunk)."""
    entry: dict[str, Any] = {"chunk": None, "error": type(error).__name__, "message": str(error)}
    if isinstance(error, OutputWriteError):
        entry.update(error=error.kind)
    elif isinstance(error, OSError):
        entry.update(message=describe_os_error(error))
    elif isinstance(error, ContractError):
        entry.update(
            message=f"{len(error.problems)} problem(s) with the export",
            problems=[str(problem) for problem in error.problems],
        )
    return entry


def sort_rejects(tables: Iterable[pa.Table]) -> pa.Table:
    """All rejected rows, ordered by table (contract order) and row number."""
    combined = pa.concat_tables([CHUNK_REJECTS_SCHEMA.empty_table(), *tables])
    order = {table.name: rank for rank, table in enumerate(TABLES)}
    rank = np.array([order[t] for t in combined.column("table").to_pylist()], dtype=np.int64)
    rows = combined.column("row").to_numpy()
    return combined.take(pa.array(np.lexsort((rows, rank))))
