"""Row notes add up over the parts of an export as the loader counts the whole."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.coercion import check_table
from features.contract import ACTIVITIES
from features.row_notes import NoteKind, RowNote, merged_notes, value_digest

TYPES = ["email_open", "Fax_Blast", "fax_blast", "carrier_pigeon", "web_visit", "smoke_signal"]


def _activities(kinds: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "activity_id": [f"A{i}" for i in range(len(kinds))],
            "lead_id": ["L1"] * len(kinds),
            "occurred_at": ["2025-01-02T03:04:05Z"] * len(kinds),
            "activity_type": kinds,
        }
    )


def _notes(frame: pd.DataFrame) -> list[RowNote]:
    return check_table(ACTIVITIES, frame, "activities").notes


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(TYPES), min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=4),
)
def test_the_notes_of_parts_add_up_to_the_note_of_the_whole(
    kinds: list[str], cuts: list[int]
) -> None:
    # Given a table of activities cut into parts at random rows
    whole = _activities(kinds)
    bounds = [0, *sorted(min(c, len(kinds)) for c in cuts), len(kinds)]
    parts = [
        (whole.iloc[a:b].reset_index(drop=True), np.arange(a, b))
        for a, b in itertools.pairwise(bounds)
        if b > a
    ]

    # When each part is checked alone and its notes numbered as in the file
    renumbered = [note.renumbered(rows) for part, rows in parts for note in _notes(part)]

    # Then they merge into the note of the whole table
    assert merged_notes(renumbered) == _notes(whole)


def test_a_note_reads_its_counts_and_its_first_row() -> None:
    (note,) = _notes(_activities(["email_open", "Fax_Blast", "fax_blast", "smoke_signal"]))

    assert (note.rows, note.first_row, len(note.values)) == (3, 2, 2)
    assert note.text() == (
        "activities: 3 activities with an unknown activity_type were kept as 'other' "
        "(2 distinct values; first at row 2)"
    )


def test_a_note_keeps_digests_never_the_values() -> None:
    (note,) = _notes(_activities(["email_open", "jane.doe@example.com"]))

    written = json.dumps(note.to_dict())
    assert "jane" not in written
    assert note.values == (value_digest("jane.doe@example.com"),)


def test_a_note_reads_back_from_its_dictionary() -> None:
    note = RowNote(NoteKind.SPACED_LEAD_ID, "leads", 4, 17)
    again = RowNote.from_dict(json.loads(json.dumps(note.to_dict())))

    assert again == note
    assert again.text().startswith("leads: 4 lead_id values have a space")


def test_notes_merge_per_file_and_kind() -> None:
    spaced = RowNote(NoteKind.SPACED_LEAD_ID, "leads", 1, 9)
    typed = RowNote(NoteKind.UNKNOWN_ACTIVITY_TYPE, "activities", 2, 5, ("a",))
    later = RowNote(NoteKind.UNKNOWN_ACTIVITY_TYPE, "activities", 1, 3, ("a", "b"))

    assert merged_notes([spaced, typed, later]) == [
        RowNote(NoteKind.UNKNOWN_ACTIVITY_TYPE, "activities", 3, 3, ("a", "b")),
        spaced,
    ]


def test_an_unknown_kind_is_refused_when_read_back() -> None:
    with pytest.raises(ValueError, match="gossip"):
        RowNote.from_dict(
            {"kind": "gossip", "file": "leads", "rows": 1, "first_row": 1, "values": []}
        )


@pytest.mark.parametrize("kind", list(NoteKind))
def test_every_kind_of_note_names_its_file_count_and_first_row(kind: NoteKind) -> None:
    text = RowNote(kind, "table.csv", 2, 17, ("a", "b")).text()

    assert text.startswith("table.csv: 2 ")
    assert "first at row 17" in text
