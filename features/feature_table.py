"""Feature columns and their catalogue entries, and the per-example look-ups blocks share."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Literal

import numpy as np

from features.config import FeatureConfig
from features.examples import Examples
from features.history import DAY_US, History
from features.normalise import normalise_text

FeatureKind = Literal["numeric", "category", "text"]


@dataclass(frozen=True)
class FeatureSpec:
    """What one feature means and where it comes from (one row of the catalogue)."""

    name: str
    kind: FeatureKind
    meaning: str
    window: str
    source: str
    vocabulary: tuple[str, ...] = ()


@dataclass
class FeatureTable:
    """Raw feature columns for a set of examples, in catalogue order.

    ``numeric`` and ``category`` columns are float64 (categories as contract codes, NaN
    when missing); ``text`` columns hold normalised strings to be encoded with a
    vocabulary learned in training (``features.encoding``).

    Columns are stored as the blocks the engine computed them in (a 2-D float64 block of
    one or more numeric columns, or a 1-D object array for one text column), so that the
    model's matrix is one concatenation rather than a stack of hundreds of columns;
    ``columns`` is a by-name view of them.
    """

    specs: list[FeatureSpec] = field(default_factory=list)
    blocks: list[np.ndarray] = field(default_factory=list)
    _view: tuple[int, list[str], list[int]] = field(
        default=(-1, [], []), init=False, repr=False, compare=False
    )

    @property
    def names(self) -> list[str]:
        """Feature names in order."""
        return [spec.name for spec in self.specs]

    @property
    def n_rows(self) -> int:
        """How many examples the table holds."""
        return len(self.blocks[0]) if self.blocks else 0

    @property
    def columns(self) -> Mapping[str, np.ndarray]:
        """Every column by name (views into the blocks; do not modify)."""
        return _Columns(self)

    def locate(self, name: str) -> tuple[int, int | None]:
        """The block holding feature ``name`` and its column there (None: a 1-D text block).

        Raises:
            KeyError: no feature of that name.
        """
        names, starts = self._layout()
        try:
            position = names.index(name)
        except ValueError:
            raise KeyError(name) from None
        block = bisect_right(starts, position) - 1
        return block, None if self.blocks[block].ndim == 1 else position - starts[block]

    def _layout(self) -> tuple[list[str], list[int]]:
        """Feature names, and the position of each block's first feature (cached)."""
        built, names, starts = self._view
        if built != len(self.specs):
            names = self.names
            starts, position = [], 0
            for block in self.blocks:
                starts.append(position)
                position += 1 if block.ndim == 1 else block.shape[1]
            self._view = (len(self.specs), names, starts)
        return names, starts

    def add(
        self,
        name: str,
        values: np.ndarray,
        *,
        meaning: str,
        source: str,
        window: str = "at as_of",
        kind: FeatureKind = "numeric",
        vocabulary: tuple[str, ...] = (),
    ) -> None:
        """Record one feature column and its catalogue entry."""
        self._append(feature_spec(name, kind, meaning, window, source, vocabulary), values)

    def _append(self, spec: FeatureSpec, values: np.ndarray) -> None:
        if spec.kind == "text":
            block = np.asarray(values, dtype=object)
        else:
            block = np.asarray(values, dtype=np.float64).reshape(-1, 1)
        self.specs.append(spec)
        self.blocks.append(block)

    def add_block(self, specs: tuple[FeatureSpec, ...], block: np.ndarray) -> None:
        """Record several numeric features at once: column ``j`` of ``block`` is ``specs[j]``.

        Raises:
            ValueError: ``block`` is not 2-D with one column per spec.
        """
        block = np.asarray(block, dtype=np.float64)
        if block.ndim != 2 or block.shape[1] != len(specs):
            raise ValueError(f"a block of {len(specs)} features must be 2-D, got {block.shape}")
        self.specs.extend(specs)
        self.blocks.append(block)

    def add_category(
        self, name: str, codes: np.ndarray, vocabulary: tuple[str, ...], **kw: str
    ) -> None:
        """Record a contract-vocabulary category given its integer codes (-1 missing)."""
        values = np.where(codes >= 0, codes, np.nan)
        self.add(
            name,
            values,
            kind="category",
            vocabulary=vocabulary,
            meaning=kw["meaning"],
            source=kw["source"],
            window=kw.get("window", "at as_of"),
        )

    def take(self, rows: np.ndarray) -> FeatureTable:
        """The examples at ``rows`` (a boolean mask or an index array)."""
        return FeatureTable(list(self.specs), [block[rows] for block in self.blocks])

    @staticmethod
    def concatenate(tables: list[FeatureTable]) -> FeatureTable:
        """The examples of several tables with the same features, in order.

        Raises:
            ValueError: the tables' features differ.
        """
        first = tables[0]
        if any(table.specs != first.specs for table in tables[1:]):
            raise ValueError("tables with different features cannot be concatenated")
        blocks = [
            np.concatenate([table.blocks[index] for table in tables])
            for index in range(len(first.blocks))
        ]
        return FeatureTable(list(first.specs), blocks)


class _Columns(Mapping[str, np.ndarray]):
    """A read-only by-name view of a ``FeatureTable``'s columns."""

    def __init__(self, table: FeatureTable) -> None:
        self._table = table

    def __getitem__(self, name: str) -> np.ndarray:
        block, column = self._table.locate(name)
        values = self._table.blocks[block]
        return values if column is None else values[:, column]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table.names)

    def __len__(self) -> int:
        return len(self._table.specs)


@cache
def feature_spec(
    name: str,
    kind: FeatureKind,
    meaning: str,
    window: str,
    source: str,
    vocabulary: tuple[str, ...] = (),
) -> FeatureSpec:
    """One shared ``FeatureSpec`` per distinct definition (specs do not depend on data)."""
    return FeatureSpec(name, kind, meaning, window, source, vocabulary)


@dataclass
class ExampleContext:
    """Per-example look-ups shared by the feature blocks.

    ``all_time_activity_counts`` (examples x activity types, every activity up to
    ``as_of``) is filled by the engagement block and read by the points block after it.
    """

    history: History
    examples: Examples
    config: FeatureConfig
    all_time_activity_counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @cached_property
    def lead(self) -> np.ndarray:
        """Lead index of each example."""
        return self.history.rejections.lead[self.examples.rejection_row]

    @cached_property
    def rejected_at(self) -> np.ndarray:
        """Rejection time of each example (microseconds)."""
        return self.history.rejections.time[self.examples.rejection_row]

    @property
    def as_of(self) -> np.ndarray:
        """Scoring moment of each example (microseconds)."""
        return self.examples.as_of

    def lead_text(self, column: str) -> np.ndarray:
        """A free-text lead column, normalised once per lead (shared by every block)."""
        cache = self.__dict__.setdefault("_normalised_text", {})
        if column not in cache:
            cache[column] = normalise_text(self.history.lead_text[column])
        return cache[column]

    def days_before_as_of(self, times: np.ndarray) -> np.ndarray:
        """Days from ``times`` to each example's ``as_of``."""
        return (self.as_of - times) / DAY_US
