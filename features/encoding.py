"""Category vocabularies learned once in training and carried inside the model.

A value outside the vocabulary (unseen or too rare in training) encodes as missing, so a new
category never shifts the codes, and therefore the scores, of any other row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.engine import FeatureTable


@dataclass(frozen=True)
class CategoryVocabulary:
    """For each free-text feature, the values kept as categories, most frequent first."""

    values: dict[str, tuple[str, ...]]
    _lookups: dict[str, dict[str, float]] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def fit(table: FeatureTable, min_count: int, max_categories: int) -> CategoryVocabulary:
        """Keep values seen at least ``min_count`` times, at most ``max_categories`` each."""
        vocabularies: dict[str, tuple[str, ...]] = {}
        for spec in table.specs:
            if spec.kind != "text":
                continue
            counts = Counter(v for v in table.columns[spec.name] if v is not None)
            frequent = sorted(
                (value for value, n in counts.items() if n >= min_count),
                key=lambda value: (-counts[value], value),
            )
            vocabularies[spec.name] = tuple(frequent[:max_categories])
        return CategoryVocabulary(vocabularies)

    def encode(self, table: FeatureTable) -> np.ndarray:
        """The feature matrix (rows x features, float64), text encoded by vocabulary."""
        if not table.specs:
            return np.empty((table.n_rows, 0), dtype=np.float64)
        parts: list[np.ndarray] = []
        position = 0
        for block in table.blocks:
            if block.ndim == 1:  # one text column
                parts.append(self._codes(table.specs[position].name, block)[:, None])
                position += 1
            else:
                parts.append(block)
                position += block.shape[1]
        return np.concatenate(parts, axis=1)

    def knows(self, name: str, value: str) -> bool:
        """Whether ``value`` is a learned category of the free-text feature ``name``."""
        return value in self._lookup(name)

    def _lookup(self, name: str) -> dict[str, float]:
        lookup = self._lookups.get(name)
        if lookup is None:
            lookup = {value: float(i) for i, value in enumerate(self.values.get(name, ()))}
            self._lookups[name] = lookup
        return lookup

    def _codes(self, name: str, column: np.ndarray) -> np.ndarray:
        lookup = self._lookup(name)
        if len(column) == 1:
            return np.array([lookup.get(column[0], np.nan)])
        uniques, inverse = np.unique(column.astype(str), return_inverse=True)
        present = column != None  # noqa: E711 - element-wise comparison on an object array
        mapped = np.array([lookup.get(u, np.nan) for u in uniques], dtype=np.float64)
        return np.where(present, mapped[inverse], np.nan)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (stored in the model artifact)."""
        return {name: list(values) for name, values in self.values.items()}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> CategoryVocabulary:
        """Rebuild from ``to_dict`` output."""
        return CategoryVocabulary({name: tuple(values) for name, values in data.items()})
