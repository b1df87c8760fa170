"""The whole job's fail-closed check: leads named by a set-aside opt-out, rejection or
opportunity are never scored, also when the opt-out names them only read loosely."""

from __future__ import annotations

import pyarrow as pa

from serving.batch_output import CHUNK_REJECTS_SCHEMA
from serving.chunk_scoring import FailClosed


def _rejects(rows: list[tuple[str, str | None]], opened: str | None = None) -> pa.Table:
    """Chunk rejects of ``(table, lead_id)`` rows, each naming a lead of its chunk whose
    open rejection, as scored, is ``opened``."""
    columns = {
        "table": [table for table, _ in rows],
        "row": list(range(1, len(rows) + 1)),
        "key": [None] * len(rows),
        "lead_id": [lead for _, lead in rows],
        "rejection_id": [opened] * len(rows),
        "reason": ["status: must be one of: ..."] * len(rows),
        "lead_known": [lead is not None for _, lead in rows],
        "lead_moved": [False] * len(rows),
    }
    return pa.table(columns, schema=CHUNK_REJECTS_SCHEMA)


def test_leads_an_opt_out_names_read_loosely_are_left_out_of_every_part() -> None:
    # Given an opt-out set aside in one chunk for "L1" (written in lower case), an activity
    # set aside for "L2" (which never withholds), and scored parts from several chunks
    check = FailClosed.of(_rejects([("consent", "l1"), ("activities", "L2")]))
    parts = [
        pa.table({"lead_id": ["L1", "L2", "L3"], "rejection_id": ["R1", "R2", "R3"]}),
        pa.table({"lead_id": ["l1", "\uff2c1", "L4"], "rejection_id": ["R4", "R5", "R6"]}),
    ]

    # When the parts pass the check
    kept = [part.column("lead_id").to_pylist() for part in check.parts(parts)]

    # Then every lead the opt-out names, as written or read loosely, is left out and counted
    assert kept == [["L2", "L3"], ["L4"]]
    assert check.dropped == 3


def test_the_rejects_file_shows_no_open_rejection_for_a_lead_withheld_read_loosely() -> None:
    # Given an opt-out set aside for "l1" and an activity set aside for lead "L1" (withheld
    # only because the opt-out names it read loosely), and one for "L2"
    rejects = _rejects([("consent", "l1"), ("activities", "L1"), ("activities", "L2")], "R9")
    check = FailClosed.of(rejects)
    list(check.parts([]))

    # When the rejects file is written
    published = check.published(rejects, lambda names: {})

    # Then the withheld lead's rows name no open rejection; the scored lead's row does
    assert published.column("rejection_id").to_pylist() == [None, None, "R9"]
