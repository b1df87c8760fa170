"""Between Spark's Python workers and the driver: a chunk's outcome as rows of one schema.

``applyInArrow`` returns a single Arrow schema of Spark-neutral types, so each bucket's
scored rows, rejected rows and report row travel tagged by kind (``KIND_COLUMN``) in one
padded table (``encode_outcome``), times as int64 microseconds and dates as int32 days; the
driver splits them again and casts them back to the output's types (``from_transport``,
``renamed_rejects``, ``reports``).
"""

from __future__ import annotations

import json

import pyarrow as pa

from features.export_end import EventDays
from features.row_notes import RowNote
from serving.batch_local import ChunkReport
from serving.batch_output import CHUNK_REJECTS_SCHEMA, part_schema
from serving.chunk_scoring import ChunkOutcome

KIND_COLUMN = "_kind"
LATEST_COLUMN = "_latest_us"
EVENT_DAYS_COLUMN = "_event_days"
WARNINGS_COLUMN = "_warnings"
ROW_NOTES_COLUMN = "_row_notes"


def transport_schema(with_reasons: bool) -> pa.Schema:
    """The bucket function's output: scored rows, rejected rows and one report row, tagged."""
    scored = [_plain(f) for f in part_schema(with_reasons)]
    rejects = [pa.field(f"reject_{f.name}", f.type) for f in CHUNK_REJECTS_SCHEMA]
    report = [
        pa.field("rows", pa.int64()),
        pa.field("rejected", pa.int64()),
        pa.field("withheld", pa.int64()),
        pa.field(LATEST_COLUMN, pa.int64()),
        pa.field(WARNINGS_COLUMN, pa.string()),
        pa.field(EVENT_DAYS_COLUMN, pa.string()),
        pa.field(ROW_NOTES_COLUMN, pa.string()),
    ]
    return pa.schema([pa.field(KIND_COLUMN, pa.string()), *scored, *rejects, *report])


def encode_outcome(outcome: ChunkOutcome, with_reasons: bool) -> pa.Table:
    """One chunk's outcome as rows of ``transport_schema``."""
    schema = transport_schema(with_reasons)
    scored = _tagged(
        outcome.scored.cast(pa.schema([_plain(f) for f in outcome.scored.schema])), "scored"
    )
    rejects = _tagged(
        outcome.rejects.rename_columns([f"reject_{n}" for n in CHUNK_REJECTS_SCHEMA.names]),
        "reject",
    )
    report = pa.table(
        {
            KIND_COLUMN: ["latest"],
            "rows": [outcome.scored.num_rows],
            "rejected": [outcome.rejects.num_rows],
            "withheld": [outcome.withheld],
            LATEST_COLUMN: pa.array([outcome.latest_us], pa.int64()),
            WARNINGS_COLUMN: [json.dumps(list(outcome.warnings))],
            EVENT_DAYS_COLUMN: [
                None if outcome.event_days is None else json.dumps(outcome.event_days.to_lists())
            ],
            ROW_NOTES_COLUMN: [json.dumps([note.to_dict() for note in outcome.row_notes])],
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


def renamed_rejects(table: pa.Table) -> pa.Table:
    """Rejected rows collected from Spark, back to the rejects file's names and types."""
    return table.rename_columns(list(CHUNK_REJECTS_SCHEMA.names)).cast(CHUNK_REJECTS_SCHEMA)


def reports(table: pa.Table) -> list[ChunkReport]:
    """The chunk reports collected from Spark (one row per bucket)."""
    rows = table.to_pylist()
    return [
        ChunkReport(
            -1,
            r["rows"],
            r["rejected"],
            r[LATEST_COLUMN],
            tuple(json.loads(r[WARNINGS_COLUMN])),
            r["withheld"],
            None
            if r[EVENT_DAYS_COLUMN] is None
            else EventDays.from_lists(json.loads(r[EVENT_DAYS_COLUMN])),
            tuple(RowNote.from_dict(note) for note in json.loads(r[ROW_NOTES_COLUMN])),
        )
        for r in rows
    ]
