"""Problems found in input data, reported all at once with where they are and why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located as precisely as possible.

    Attributes:
        file: the file (or API field path) the problem is in.
        message: what is wrong, in plain words.
        column: the column concerned, if any.
        row: 1-based data row (the header is not counted; in a CSV the line is ``row + 1``).
        found: what the first offending cell holds, described by its kind and length
            (``features.cell_descriptions``); a cell's content is never shown, as a shifted
            CSV row can put personal data in any column.
        count: how many rows share this problem (the row and what was found are the first
            example).
    """

    file: str
    message: str
    column: str | None = None
    row: int | None = None
    found: str | None = None
    count: int = 1

    def __str__(self) -> str:
        where = self.file
        if self.column:
            where += f", column {self.column!r}"
        if self.row is not None:
            where += f", row {self.row}"
        text = f"{where}: {self.message}"
        if self.found is not None:
            text += f"; the cell holds {self.found}"
        if self.count > 1:
            text += f" [{self.count} rows; first shown]"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of this problem."""
        return asdict(self)


class ContractError(ValueError):
    """Input that breaks the data contract; carries every problem found, and the loader's
    notes on the input (``notes``), which may explain them."""

    def __init__(self, problems: Iterable[Problem], notes: Iterable[str] = ()) -> None:
        self.problems: list[Problem] = list(problems)
        self.notes: list[str] = list(notes)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) with the input:\n{lines}")


def shorten(value: object, limit: int = 60) -> str:
    """A printable, bounded rendering of an error's text (never of a cell's value)."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
