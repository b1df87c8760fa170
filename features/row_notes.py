"""The loader's warnings about some rows of a table, kept as counts.

A batch job reads an export in chunks, each checked on its own; a warning written as text
per chunk would say "2 activities ..." once per chunk, with row numbers counted from the
chunk's first row. A ``RowNote`` keeps what its text says as numbers (rows, the first one,
digests of the distinct values), so that the notes of an export's parts add up, with
``merged_notes``, to the note the loader gives for the whole export, and each part's
first row can be put back in its file's numbering (``RowNote.renumbered``).

Values are never kept as written: a shifted CSV row can put personal data in any column,
and notes travel to part metadata and between Spark's workers. Distinct values are
counted through short digests of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np


class NoteKind(StrEnum):
    """What a row note is about."""

    UNKNOWN_ACTIVITY_TYPE = "unknown_activity_type"
    SPACED_LEAD_ID = "spaced_lead_id"
    SAME_MOMENT_REJECTIONS = "same_moment_rejections"
    CLOSED_BEFORE_CREATED = "closed_before_created"


@dataclass(frozen=True)
class RowNote:
    """A warning about ``rows`` rows of one file.

    Attributes:
        kind: what the rows have in common.
        file: the file (or table) the rows are in.
        rows: how many rows.
        first_row: the first one, a 1-based data row as in ``features.problems.Problem``.
        values: digests of the distinct values concerned (``value_digest``), sorted; empty
            for a kind that does not count its values.
    """

    kind: NoteKind
    file: str
    rows: int
    first_row: int
    values: tuple[str, ...] = ()

    def text(self) -> str:
        """The warning as the loader writes it."""
        return f"{self.file}: {_SAID[self.kind](self)}"

    def renumbered(self, file_rows: np.ndarray) -> RowNote:
        """The note of a part of a file, its first row numbered as in the file.

        Args:
            file_rows: the 0-based file row of each of the part's rows.
        """
        return replace(self, first_row=int(file_rows[self.first_row - 1]) + 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (``from_dict`` reads it back)."""
        return {
            "kind": self.kind.value,
            "file": self.file,
            "rows": self.rows,
            "first_row": self.first_row,
            "values": list(self.values),
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> RowNote:
        """A note from its ``to_dict`` form."""
        return RowNote(
            NoteKind(data["kind"]),
            str(data["file"]),
            int(data["rows"]),
            int(data["first_row"]),
            tuple(str(v) for v in data["values"]),
        )


def _unknown_types(note: RowNote) -> str:
    distinct = len(note.values)
    return (
        f"{note.rows} activities with an unknown activity_type were kept as 'other' "
        f"({distinct} distinct value{'s' if distinct > 1 else ''}; first at row "
        f"{note.first_row})"
    )


def _spaced_lead_ids(note: RowNote) -> str:
    values = "1 lead_id value has" if note.rows == 1 else f"{note.rows} lead_id values have"
    return (
        f"{values} a space at the start or end (first at row {note.first_row}); ids are "
        "compared as written, so rows of other tables that leave the spaces out point to no "
        "lead"
    )


def _same_moment_rejections(note: RowNote) -> str:
    return (
        f"{note.rows} rejections share their lead and their rejected_at with another (first "
        f"at row {note.first_row}); of such rejections the one with the greatest "
        "rejection_id (in code-point order) counts as the later: it alone can be open and "
        "scored, the others count as its earlier rejections"
    )


def _closed_before_created(note: RowNote) -> str:
    return (
        f"{note.rows} opportunities close before they were created (closed_at before "
        f"created_at; first at row {note.first_row}); each is read as closed at its creation"
    )


#: What each kind of note says of its rows, after its file's name.
_SAID: dict[NoteKind, Callable[[RowNote], str]] = {
    NoteKind.UNKNOWN_ACTIVITY_TYPE: _unknown_types,
    NoteKind.SPACED_LEAD_ID: _spaced_lead_ids,
    NoteKind.SAME_MOMENT_REJECTIONS: _same_moment_rejections,
    NoteKind.CLOSED_BEFORE_CREATED: _closed_before_created,
}


def value_digest(value: str) -> str:
    """A short digest of a value, to count distinct values without keeping them."""
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def value_digests(values: Sequence[str]) -> tuple[str, ...]:
    """The sorted distinct digests of ``values``."""
    return tuple(sorted({value_digest(v) for v in values}))


def merged_notes(notes: Iterable[RowNote]) -> list[RowNote]:
    """The notes of an export's parts as one note per file and kind: rows added up, the
    earliest first row, the distinct values of all parts; ordered by file, then kind."""
    groups: dict[tuple[str, NoteKind], list[RowNote]] = {}
    for note in notes:
        groups.setdefault((note.file, note.kind), []).append(note)
    return [_merged(groups[key]) for key in sorted(groups)]


def _merged(notes: list[RowNote]) -> RowNote:
    return replace(
        notes[0],
        rows=sum(n.rows for n in notes),
        first_row=min(n.first_row for n in notes),
        values=tuple(sorted({v for n in notes for v in n.values})),
    )
